//! Bulk work (snapshot encoding, framing and writing) on its own thread under the
//! `SCHED_IDLE` policy, so that it takes only the CPU time the write path leaves over.
//!
//! A snapshot of a busy node is megabytes encoded, framed and written at once, on every node
//! at about the same index. On a machine whose CPUs the cluster already keeps busy, that
//! burst delays the write path: measured at 5,000 XADD/s on 2 cores (after the allocator
//! fix in `main.rs`), acknowledgements peaked at 80-102 ms across a snapshot with the work
//! at normal priority and at 36-46 ms under `SCHED_IDLE`. A normal thread that wakes
//! preempts a `SCHED_IDLE` one at once, and the scheduler still gives it a small share, so
//! the build always finishes. Where the policy is refused the thread falls back to nice 19.
//! The thread is new for each job: neither can be undone without privilege, and the
//! runtime's blocking threads are shared. Snapshot installs do not come here: a node
//! catching up must not wait for an idle CPU.

use std::io;

/// The nice value of a background thread where `SCHED_IDLE` is refused (19 is the lowest
/// priority).
pub const FALLBACK_NICE: i32 = 19;

/// Runs `job` on a new thread named `name` at the lowest priority and waits for its result.
pub async fn run<T: Send + 'static>(
    name: &str,
    job: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            lower_priority();
            let _ = tx.send(job());
        })?;
    rx.await
        .map_err(|_| io::Error::other("background job panicked"))
}

fn this_thread() -> libc::pid_t {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as libc::pid_t }
}

/// Puts this thread under `SCHED_IDLE`, else at nice [`FALLBACK_NICE`], else leaves it.
fn lower_priority() {
    let tid = this_thread();
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscalls on this thread's own id; `param` outlives the call.
    if unsafe { libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param) } == 0 {
        return;
    }
    let refused = io::Error::last_os_error();
    // SAFETY: as above.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, FALLBACK_NICE) } != 0 {
        tracing::debug!(error = %refused, "background thread keeps its priority");
    }
}

/// This thread's scheduling policy.
#[cfg(test)]
fn current_policy() -> i32 {
    // SAFETY: as above.
    unsafe { libc::sched_getscheduler(this_thread()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_job_runs_under_sched_idle_and_leaves_the_caller_as_it_was() {
        let before = current_policy();
        let (value, policy) = run("test-bg", || (6 * 7, current_policy())).await.unwrap();
        assert_eq!(value, 42);
        assert_eq!(policy, libc::SCHED_IDLE);
        assert_eq!(current_policy(), before);
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error() {
        let err = run("test-bg", || -> u8 { panic!("boom") })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("panicked"), "{err}");
    }
}
