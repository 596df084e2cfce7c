//! The operator: its real reconcile code, run against the simulated Kubernetes every 300 ms in a
//! background thread, as the Deployment would run it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::sim::Sim;

/// The operator's reconcile loop; it stops when dropped.
pub struct Operator {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Operator {
    /// Reconcile every cluster of `sim` every 300 ms until dropped.
    pub fn start(sim: Arc<Sim>) -> Operator {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            while !s.load(Ordering::Relaxed) {
                for (cluster, result) in rt.block_on(sim.reconcile_all()) {
                    if let Err(e) = result {
                        eprintln!("reconcile {cluster}: {e}");
                    }
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        Operator {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
