//! Where each pod of the drill's namespace listens: its IP, from the API server, kept fresh by a
//! background thread (a recreated pod gets a new address within a few hundred milliseconds).
//!
//! The drill talks to Redis and the instance managers directly by pod IP (the machine routes to
//! every region), as an operator's own tooling would; Services are exercised by the pods
//! themselves. One book per process: a drill runs one cluster.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use kcluster::client::Kube;

static BOOK: OnceLock<Arc<RwLock<BTreeMap<String, String>>>> = OnceLock::new();

fn book() -> &'static Arc<RwLock<BTreeMap<String, String>>> {
    BOOK.get_or_init(|| Arc::new(RwLock::new(BTreeMap::new())))
}

/// Keeps the book in step with the pods of `namespace` until dropped.
pub struct Addresses {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Addresses {
    pub fn follow(
        cluster: &kcluster::cluster::Cluster,
        namespace: &str,
    ) -> Result<Addresses, String> {
        let kube = Kube::new(cluster)?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let namespace = namespace.to_string();
        let refresh = move || {
            if let Ok(pods) = kube.pods(&namespace, "") {
                let mut book = book().write().unwrap();
                for pod in pods {
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    match pod.status.and_then(|s| s.pod_ip) {
                        Some(ip) => {
                            book.insert(name, ip);
                        }
                        // Not scheduled or not started yet: forget a previous incarnation's.
                        None => {
                            book.remove(&name);
                        }
                    }
                }
            }
        };
        refresh();
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                refresh();
            }
        });
        Ok(Addresses {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for Addresses {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The pod's IP, if it has one now.
pub fn try_ip(pod: &str) -> Option<String> {
    book().read().unwrap().get(pod).cloned()
}

/// The pod's IP; waits up to 30 s for one (a pod being created). An unknown pod gives an
/// address nothing listens on, so the caller's connection fails and says so.
pub fn ip(pod: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(ip) = try_ip(pod) {
            return ip;
        }
        if Instant::now() > deadline {
            return format!("0.0.0.0 (no address for {pod})");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The pod whose IP is `ip`, if any.
pub fn pod_at(ip: &str) -> Option<String> {
    book()
        .read()
        .unwrap()
        .iter()
        .find(|(_, a)| a.as_str() == ip)
        .map(|(p, _)| p.clone())
}
