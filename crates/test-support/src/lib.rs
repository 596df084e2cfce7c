//! What the tests and the DR drill share, in one place (linkerd2's `policy-test` is the model):
//!
//! - [`samples`]: the spec's samples in `config/samples/`, and the repository root;
//! - [`wait`]: polling until something holds, with a timeout that names what was awaited;
//! - [`process`]: required tools, commands (inside a network namespace or not), processes
//!   killed when dropped, free ports, scratch directories;
//! - [`netns`]: network namespaces, veth pairs, silent link cuts and rate limits;
//! - [`http`]: a blocking HTTP GET, from here or from inside a network namespace;
//! - [`resp`]: a minimal blocking RESP2 client, independent of the code under test;
//! - [`redis`]: a `redis-server` (and `redis-cli`) for a test.
//!
//! Everything here fails loudly: a missing tool or a failed setup step panics (in tests) or
//! returns an error that says what to do (in the drill), never skips.

pub mod http;
pub mod netns;
pub mod process;
pub mod redis;
pub mod resp;
pub mod samples;
pub mod tls;
pub mod wait;

pub use process::{free_port, unique};
pub use samples::repo_root;
