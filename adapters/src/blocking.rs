//! The bridge from the synchronous ports to the async clients (kube-rs, openssh).
//!
//! Ports are synchronous: the engine runs each step inside `tokio::task::spawn_blocking`. An
//! adapter keeps a [`Blocking`] (a tokio runtime handle, captured or owned) and blocks on it with
//! [`Handle::block_on`], wrapped in [`tokio::task::block_in_place`]:
//! - from a `spawn_blocking` thread or any plain thread: `block_in_place` just runs the closure,
//!   and `Handle::block_on` is legal there;
//! - from an async task on a **multi-thread** runtime (e.g. constructing adapters in
//!   `#[tokio::main]`): `block_in_place` hands the worker's other tasks to another thread first;
//! - from an async task on a **current-thread** runtime it **panics** (tokio cannot block such a
//!   runtime's only thread): call ports from `spawn_blocking` there, as the engine does.

use std::future::Future;
use std::sync::Arc;
use tokio::runtime::{Builder, Handle, Runtime};

/// A tokio runtime the adapters' I/O runs on.
#[derive(Clone)]
pub struct Blocking {
    handle: Handle,
    _owned: Option<Arc<OwnedRuntime>>,
}

impl std::fmt::Debug for Blocking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blocking").field("owned", &self._owned.is_some()).finish()
    }
}

/// Shuts its runtime down in the background when dropped, so dropping the last adapter from
/// inside an async context does not panic.
struct OwnedRuntime(Option<Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl Blocking {
    /// Use an existing runtime (e.g. the CLI's `#[tokio::main]` one, `Handle::current()`).
    /// It should be a multi-thread runtime, so its I/O driver keeps running while a blocking
    /// thread waits; a current-thread runtime only drives I/O while its owner is inside
    /// `Runtime::block_on`.
    pub fn new(handle: Handle) -> Self {
        Blocking { handle, _owned: None }
    }

    /// The runtime of the calling context, if any.
    pub fn current() -> Option<Self> {
        Handle::try_current().ok().map(Blocking::new)
    }

    /// A small runtime of our own (one worker thread), for callers without one.
    pub fn dedicated(name: &str) -> std::io::Result<Self> {
        let rt = Builder::new_multi_thread().worker_threads(1).thread_name(name).enable_all().build()?;
        Ok(Blocking { handle: rt.handle().clone(), _owned: Some(Arc::new(OwnedRuntime(Some(rt)))) })
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Run `fut` to completion on this runtime, blocking the calling thread.
    ///
    /// # Panics
    /// When called from an async task of a current-thread runtime (see the module documentation).
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        tokio::task::block_in_place(|| self.handle.block_on(fut))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedicated_runtime_runs_io_from_a_plain_thread() {
        let b = Blocking::dedicated("drctl-test").unwrap();
        let v = b.block_on(async {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            7
        });
        assert_eq!(v, 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn captured_handle_works_from_spawn_blocking() {
        let b = Blocking::current().expect("inside a runtime");
        let v = tokio::task::spawn_blocking(move || {
            b.block_on(async {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                l.local_addr().unwrap().port()
            })
        })
        .await
        .unwrap();
        assert!(v > 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn works_from_an_async_task_of_a_multi_thread_runtime() {
        let own = Blocking::current().unwrap();
        assert_eq!(
            own.block_on(async {
                tokio::task::yield_now().await;
                1
            }),
            1
        );
        let other = tokio::task::spawn_blocking(|| Blocking::dedicated("drctl-other").unwrap()).await.unwrap();
        assert_eq!(other.block_on(async { 2 }), 2);
        tokio::task::spawn_blocking(move || drop(other)).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_an_owned_runtime_inside_async_code_does_not_panic() {
        let b = tokio::task::spawn_blocking(|| Blocking::dedicated("drctl-drop").unwrap()).await.unwrap();
        drop(b);
    }
}
