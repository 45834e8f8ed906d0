//! Keeps instances apart from the invoker and from each other: resource limits on every
//! instance's processes (memory, open files, processes, no core dumps) and, when the invoker
//! runs as root, a user id of its own for each instance, so that an instance can read neither
//! other instances' code, scratch folders and environments nor the invoker's files, and so
//! that every process it started, even one that left its process group, dies with it.
//!
//! Without mount namespaces (a containerised invoker rarely may create them) the filesystem
//! is the host's: privacy comes from ownership and modes, see docs/security.md.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustix::process::{Resource, Rlimit};

use crate::config::InvokerConfig;

/// Where the locks that give a user id to one instance at a time live: host-wide, because
/// every invoker on the host (and every test) draws from the same range of ids.
const USER_LOCKS: &str = "/run/nimbus/function-uids";

/// Committed memory a runtime needs beyond what its function may use: `RLIMIT_DATA` counts
/// private writable mappings (heaps, thread stacks, V8's committed pages), so a limit of
/// exactly `MemorySize` would leave a function less than it asked for.
const DATA_HEADROOM_MB: u64 = 64;

/// How instances run, settled once when the invoker starts.
pub(crate) struct Isolation {
    /// Set when instances run as users of their own.
    pub(crate) users: Option<Arc<FunctionUsers>>,
    pub(crate) interpreters: Interpreters,
}

/// The interpreters of the managed runtimes, as instances can run them.
pub(crate) struct Interpreters {
    pub(crate) python: PathBuf,
    pub(crate) node: PathBuf,
}

impl Isolation {
    /// Leases no user yet; makes the data folder fit for instances that run as users of
    /// their own: they must reach `runtimes/` and their own folder under `instances/`, never
    /// `code/` (each gets its own view of its code). Blocking.
    pub(crate) fn prepare(config: &InvokerConfig) -> Result<Isolation, String> {
        let users = FunctionUsers::new(config.function_uids.clone())
            .map_err(|e| format!("cannot set up function users: {e}"))?;
        let Some(users) = users else {
            if config.function_uids.is_some() {
                tracing::info!(
                    "the invoker is not root: instances run as its own user, kept apart by resource limits only"
                );
            }
            return Ok(Isolation {
                users: None,
                interpreters: Interpreters {
                    python: config.python.clone(),
                    node: config.node.clone(),
                },
            });
        };
        let data = &config.data_dir;
        let io = |what: &str, e: io::Error| format!("cannot prepare {what}: {e}");
        for (folder, mode) in [
            (data.clone(), 0o711),
            (data.join("instances"), 0o711),
            (data.join("code"), 0o700),
        ] {
            std::fs::create_dir_all(&folder).map_err(|e| io(&folder.display().to_string(), e))?;
            std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(mode))
                .map_err(|e| io(&folder.display().to_string(), e))?;
        }
        close_others(data).map_err(|e| io(&data.display().to_string(), e))?;
        match reachable_by_others(data) {
            Ok(None) => {}
            Ok(Some(closed)) => {
                return Err(format!(
                    "instances run as unprivileged users and cannot reach the data folder {}: {} is not searchable by other users (chmod o+x it, pick another --data-dir, or run functions as root with --function-uids off)",
                    data.display(),
                    closed.display()
                ));
            }
            Err(e) => return Err(io(&data.display().to_string(), e)),
        }
        let interpreter = |program: &Path| {
            interpreter_for_others(program).unwrap_or_else(|| {
                tracing::warn!(program = %program.display(), "no interpreter on PATH that function users can run");
                program.to_path_buf()
            })
        };
        Ok(Isolation {
            users: Some(Arc::new(users)),
            interpreters: Interpreters {
                python: interpreter(&config.python),
                node: interpreter(&config.node),
            },
        })
    }
}

/// What instances may enter in the data folder; everything else in it is closed to them.
const OPEN_TO_INSTANCES: [&str; 3] = ["code", "instances", "runtimes"];

/// The data folder must be searchable by instances, so nothing else in it may be open to
/// other users: with `nimbus dev` it also holds the store and the queue (every function's
/// code, environment and events) under well-known names.
fn close_others(data: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(data)? {
        let entry = entry?;
        if OPEN_TO_INSTANCES
            .iter()
            .any(|name| entry.file_name() == *name)
        {
            continue;
        }
        let meta = entry.metadata()?;
        let mode = meta.permissions().mode();
        if meta.is_symlink() || mode & 0o077 == 0 {
            continue;
        }
        tracing::info!(path = %entry.path().display(), "closing to other users: instances can reach the data folder");
        std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode & 0o7700))?;
    }
    Ok(())
}

/// Resource limits of one instance, set between fork and exec.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    data_bytes: u64,
    open_files: u64,
    /// Only with a user id of its own: `RLIMIT_NPROC` counts every process of the real user,
    /// so on the invoker's own user it would count (and starve) the invoker too.
    processes: Option<u64>,
}

impl Limits {
    /// Memory is bounded with `RLIMIT_DATA` rather than `RLIMIT_AS`: Node.js reserves far
    /// more address space than it uses (V8's cage and code range) and does not even start
    /// under an address-space limit of 512 MB, while `RLIMIT_DATA` counts only what is
    /// committed writable, close to what a function really uses.
    pub(crate) fn new(memory_mb: u32, open_files: u64, processes: u64, own_user: bool) -> Self {
        Self {
            data_bytes: (u64::from(memory_mb) + DATA_HEADROOM_MB) * 1024 * 1024,
            open_files,
            processes: own_user.then_some(processes),
        }
    }

    /// Sets the limits on the calling process. Runs in the child between fork and exec, so
    /// it makes system calls only: no allocation, no locks.
    pub(crate) fn apply(&self) -> io::Result<()> {
        set_limit(Resource::Data, self.data_bytes)?;
        set_limit(Resource::Nofile, self.open_files)?;
        if let Some(processes) = self.processes {
            set_limit(Resource::Nproc, processes)?;
        }
        // An aborting runtime (V8 out of memory) must not write a core dump of its heap.
        set_limit(Resource::Core, 0)
    }
}

/// Sets both the soft and hard limit, never above the hard limit the invoker has (which
/// only root could raise).
fn set_limit(resource: Resource, value: u64) -> io::Result<()> {
    let hard = rustix::process::getrlimit(resource).maximum;
    let value = hard.map_or(value, |hard| hard.min(value));
    let limit = Rlimit {
        current: Some(value),
        maximum: Some(value),
    };
    rustix::process::setrlimit(resource, limit).map_err(io::Error::from)
}

/// The user ids instances run as, when the invoker runs as root.
pub(crate) struct FunctionUsers {
    ids: Range<u32>,
    /// Ids are handed out round-robin, so a released one is not reused at once.
    next: AtomicU32,
    locks: PathBuf,
}

/// One instance's user id (its group id is the same number), held until dropped: by then
/// every process of that user must be dead (see [`kill_all`]).
#[derive(Debug)]
pub(crate) struct UserLease {
    pub(crate) id: u32,
    _lock: File,
}

impl FunctionUsers {
    /// The users to run instances as: `None` when the invoker is not root (it cannot switch
    /// users) or when `ids` is `None` (the operator turned it off).
    pub(crate) fn new(ids: Option<Range<u32>>) -> io::Result<Option<Self>> {
        let Some(ids) = ids else {
            return Ok(None);
        };
        if !rustix::process::geteuid().is_root() {
            return Ok(None);
        }
        if ids.is_empty() || ids.start == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("function user ids {ids:?}: an empty range or one holding root"),
            ));
        }
        // Processes an instance orphans (a fork bomb's, a daemon's) are reparented to the
        // invoker rather than to init, which in a container may never reap them: the
        // invoker reaps them when their instance goes away (`kill_and_reap`).
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
        // Fail at start, not at every cold start, if root may not switch users (a container
        // without CAP_SETUID or CAP_SETGID, or ids its user namespace does not map).
        as_user(ids.start, || {}).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot switch to user {}: {e}", ids.start),
            )
        })?;
        let locks = PathBuf::from(USER_LOCKS);
        std::fs::create_dir_all(&locks)?;
        std::fs::set_permissions(&locks, std::fs::Permissions::from_mode(0o700))?;
        Ok(Some(Self {
            next: AtomicU32::new(ids.start),
            ids,
            locks,
        }))
    }

    /// A user id no other instance on this host holds, rid of whatever processes a crashed
    /// invoker left running under it. Blocking: file locks and a process spawn.
    pub(crate) fn lease(&self) -> io::Result<UserLease> {
        let span = self.ids.end - self.ids.start;
        for _ in 0..span {
            let offset = self
                .next
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_sub(self.ids.start);
            let id = self.ids.start + offset % span;
            let lock = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(self.locks.join(id.to_string()))?;
            match lock.try_lock() {
                Ok(()) => {
                    kill_and_reap(id)?;
                    return Ok(UserLease { id, _lock: lock });
                }
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(error)) => return Err(error),
            }
        }
        Err(io::Error::other(format!(
            "every function user id in {:?} is in use",
            self.ids
        )))
    }
}

/// An instance's own folder under `instances/`: `tmp/`, its `TMPDIR` and `HOME`, and, with a
/// user of its own, `task/`, its view of the code. Only the instance's user can enter it.
#[derive(Debug)]
pub(crate) struct Sandbox {
    pub(crate) dir: PathBuf,
    pub(crate) tmp: PathBuf,
    /// `LAMBDA_TASK_ROOT` and the working folder.
    pub(crate) task_root: PathBuf,
    pub(crate) user: Option<UserLease>,
}

impl Sandbox {
    /// Makes the folder of a new instance of `function` running `code_dir`, and leases it a
    /// user when `users` is set. Blocking: file system work.
    pub(crate) fn create(
        root: &Path,
        function: &str,
        code_dir: &Path,
        users: Option<&FunctionUsers>,
    ) -> io::Result<Sandbox> {
        let dir = crate::scratch::create(root, function)?;
        let made = (|| {
            let tmp = dir.join("tmp");
            std::fs::create_dir(&tmp)?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700))?;
            let Some(users) = users else {
                return Ok((tmp, code_dir.to_path_buf(), None));
            };
            let user = users.lease()?;
            // The folder is root's, entered only by the instance's group; what is in `tmp`
            // is the instance's; the code view is read-only for everyone.
            std::os::unix::fs::chown(&dir, Some(0), Some(user.id))?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750))?;
            std::os::unix::fs::chown(&tmp, Some(user.id), Some(user.id))?;
            let task = dir.join("task");
            link_tree(code_dir, &task)?;
            Ok((tmp, task, Some(user)))
        })();
        match made {
            Ok((tmp, task_root, user)) => Ok(Sandbox {
                dir,
                tmp,
                task_root,
                user,
            }),
            Err(error) => {
                if let Err(e) = crate::scratch::remove_tree(&dir) {
                    tracing::warn!(path = %dir.display(), error = %e, "cannot remove an instance folder");
                }
                Err(error)
            }
        }
    }

    /// Kills every process left under the instance's user, removes the folder, then gives
    /// the user back. Blocking.
    pub(crate) fn remove(self) {
        if let Some(user) = &self.user
            && let Err(error) = kill_and_reap(user.id)
        {
            tracing::warn!(uid = user.id, %error, "cannot kill the processes of an instance's user");
        }
        if let Err(error) = crate::scratch::remove_tree(&self.dir) {
            tracing::warn!(path = %self.dir.display(), %error, "cannot remove an instance folder");
        }
    }
}

/// How long [`kill_and_reap`] waits for killed processes to end.
const REAP_DEADLINE: Duration = Duration::from_secs(10);

/// Kills every process of `uid` and reaps those orphaned to the invoker, until none is left
/// running and none of the invoker's is a zombie. (Zombies of another parent, such as those
/// of a crashed invoker's instances, now init's, are not ours to reap.) Blocking.
fn kill_and_reap(uid: u32) -> io::Result<()> {
    let me = rustix::process::getpid().as_raw_pid();
    let deadline = Instant::now() + REAP_DEADLINE;
    loop {
        // Only a process of `uid` can start another one: none left means none to come.
        let left: Vec<_> = processes_of(uid)
            .into_iter()
            .filter(|process| !process.zombie || process.parent == me)
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        kill_all(uid)?;
        for process in left {
            if process.parent == me
                && let Some(pid) = rustix::process::Pid::from_raw(process.pid)
            {
                // Not yet a zombie, or reaped meanwhile: the next round sees it again.
                let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG);
            }
        }
        if Instant::now() >= deadline {
            return Err(io::Error::other(format!(
                "processes of user {uid} are still there after {} s",
                REAP_DEADLINE.as_secs()
            )));
        }
        // Killed processes take a moment to exit; there is nothing to be notified by.
        std::thread::sleep(Duration::from_millis(2));
    }
}

struct Process {
    pid: i32,
    parent: i32,
    zombie: bool,
}

/// The processes whose real user is `uid`, from `/proc`.
fn processes_of(uid: u32) -> Vec<Process> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix(name))
                    .and_then(|rest| rest.split_whitespace().next())
            };
            if field("Uid:")?.parse::<u32>().ok()? != uid {
                return None;
            }
            Some(Process {
                pid,
                parent: field("PPid:")?.parse().ok()?,
                zombie: field("State:")? == "Z",
            })
        })
        .collect()
}

/// Kills every process running as `uid`, including those that left the instance's process
/// group (`setsid`) or were orphaned: a child switches to that user and signals `-1`, which
/// reaches every process the sender may signal, that is every process of that user; the
/// kernel sends it atomically with respect to `fork`, so a fork bomb cannot outrun it.
/// Blocking.
fn kill_all(uid: u32) -> io::Result<()> {
    as_user(uid, || {
        // `kill(-pgrp)` with pgrp 1 is `kill(-1)`: every process this user may signal.
        // ESRCH: there were none.
        let _ = rustix::process::kill_process_group(
            rustix::process::Pid::INIT,
            rustix::process::Signal::KILL,
        );
    })
}

/// Runs `work` in a child process switched to user and group `uid`, between fork and exec,
/// and reaps it: it never executes a program. `work` must be async-signal-safe (system calls
/// only, no allocation). Blocking.
fn as_user(uid: u32, work: fn()) -> io::Result<()> {
    /// The child ends by reporting this error instead of running a program.
    const DONE: rustix::io::Errno = rustix::io::Errno::CANCELED;
    let mut child = std::process::Command::new("/nonexistent/nimbus-as-user");
    child
        .uid(uid)
        .gid(uid)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: `work` is async-signal-safe (see above), and building an error from an errno
    // does not allocate.
    #[allow(unsafe_code)]
    unsafe {
        child.pre_exec(move || {
            work();
            Err(io::Error::from_raw_os_error(DONE.raw_os_error()))
        });
    }
    match child.spawn() {
        // std reaps a child that failed before exec.
        Err(error) if error.raw_os_error() == Some(DONE.raw_os_error()) => Ok(()),
        Err(error) => Err(error),
        Ok(mut child) => child.wait().map(|_| ()),
    }
}

/// Whether a user other than the owner (and outside its group) can reach `path`: every
/// folder on the way must be searchable by others. ACLs are not looked at.
pub(crate) fn reachable_by_others(path: &Path) -> io::Result<Option<PathBuf>> {
    let path = path.canonicalize()?;
    for folder in path.ancestors().skip(1) {
        let mode = std::fs::metadata(folder)?.permissions().mode();
        if mode & 0o001 == 0 {
            return Ok(Some(folder.to_path_buf()));
        }
    }
    Ok(None)
}

/// The interpreter an unprivileged instance can run: `program` itself if it is a path, else
/// the first match on `PATH` that other users can reach and execute (an interpreter under
/// root's home, such as pyenv's, is skipped for one in `/usr/bin`).
pub(crate) fn interpreter_for_others(program: &Path) -> Option<PathBuf> {
    if program.components().count() != 1 {
        return Some(program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            let executable = std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o001 != 0);
            executable && matches!(reachable_by_others(candidate), Ok(None))
        })
}

/// Makes `to` a copy of the code folder `from` out of hard links: the files are the code
/// cache's own (read-only, shared, no bytes copied), the folders are new, read-only and
/// reachable only by the instance they are made for. Copies instead of linking across file
/// systems.
///
/// Files are made readable by everyone: zips often carry `0600` (Python's `zipfile` writes
/// that), which only the invoker's user could read, and only the instance can reach them.
pub(crate) fn link_tree(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            link_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            let mode = entry.metadata()?.permissions().mode();
            if mode & 0o444 != 0o444 {
                // The cache's inode: the cache folder is closed to every instance anyway.
                std::fs::set_permissions(
                    entry.path(),
                    std::fs::Permissions::from_mode(mode | 0o444),
                )?;
            }
            match std::fs::hard_link(entry.path(), &target) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::CrossesDevices => {
                    std::fs::copy(entry.path(), &target)?;
                }
                Err(error) => return Err(error),
            }
        }
    }
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o555))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_linked_tree_has_the_same_files_and_read_only_folders() {
        let root = tempfile::tempdir().unwrap();
        let from = root.path().join("from");
        std::fs::create_dir_all(from.join("lib")).unwrap();
        std::fs::write(from.join("lib/a.py"), "x").unwrap();
        std::fs::write(from.join("b"), "y").unwrap();
        std::fs::set_permissions(from.join("b"), std::fs::Permissions::from_mode(0o400)).unwrap();
        let to = root.path().join("to");
        link_tree(&from, &to).unwrap();
        let mode = std::fs::metadata(to.join("b"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o444, "readable by the instance's user");
        assert_eq!(std::fs::read_to_string(to.join("lib/a.py")).unwrap(), "x");
        assert_eq!(std::fs::read_to_string(to.join("b")).unwrap(), "y");
        let mode = std::fs::metadata(to.join("lib"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o555);
        crate::scratch::remove_tree(&to).unwrap();
        assert!(from.join("lib/a.py").exists(), "the cache keeps its files");
    }

    #[test]
    fn reachability_looks_at_every_folder_on_the_way() {
        let root = tempfile::tempdir().unwrap();
        let inner = root.path().join("a/b");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let a = root.path().join("a");
        std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(
            reachable_by_others(&inner).unwrap(),
            Some(a.canonicalize().unwrap())
        );
        std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o755)).unwrap();
        // The temporary folder's own parents (/tmp) are searchable.
        assert_eq!(reachable_by_others(&inner).unwrap(), None);
    }
}
