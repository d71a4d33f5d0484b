//! Storage faults for tests: a small tmpfs that fills up ([`Tmpfs`]) and files and a directory
//! made immutable with `chattr +i`, which stops root too ([`Frozen`]). Each is undone when its
//! guard is dropped, also when the test panics. Both need root ([`is_root`]); a test that is not
//! root says so and passes.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether this process runs as root (effective user id 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `program` with `args`; whether it ran and exited 0.
pub fn run(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).status().is_ok_and(|status| status.success())
}

fn run_or_fail(program: &str, args: &[&str]) -> io::Result<()> {
    if run(program, args) { Ok(()) } else { Err(io::Error::other(format!("{program} {} failed", args.join(" ")))) }
}

/// A tmpfs mounted on a directory, unmounted when dropped.
#[derive(Debug)]
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount's syntax: `1m`, `64m`) on the existing directory `path`.
    pub fn mount(path: &Path, size: &str) -> io::Result<Tmpfs> {
        let target = path.to_string_lossy();
        run_or_fail("mount", &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", &target])?;
        Ok(Tmpfs { path: path.to_owned() })
    }

    /// Grows (or shrinks) the mounted tmpfs to `size`, keeping its files.
    pub fn resize(&self, size: &str) -> io::Result<()> {
        run_or_fail("mount", &["-o", &format!("remount,size={size}"), &self.path.to_string_lossy()])
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let path = self.path.to_string_lossy();
        // A file still open (a store that outlived the test) makes a plain umount fail: detach.
        if !run("umount", &[&path]) {
            run("umount", &["-l", &path]);
        }
    }
}

/// Files and directories made immutable (`chattr +i`), made mutable again when dropped.
#[derive(Debug)]
pub struct Frozen {
    paths: Vec<PathBuf>,
}

impl Frozen {
    /// Freezes every file in `dir` except SQLite's shared-memory file (`*-shm`, which readers
    /// must still map), then `dir` itself, so nothing can be written, created or removed there.
    pub fn freeze_dir(dir: &Path) -> io::Result<Frozen> {
        let mut paths =
            std::fs::read_dir(dir)?.map(|entry| entry.map(|entry| entry.path())).collect::<io::Result<Vec<_>>>()?;
        paths.retain(|path| !path.to_string_lossy().ends_with("-shm"));
        paths.push(dir.to_owned());
        let mut frozen = Frozen { paths: Vec::new() };
        for path in paths {
            run_or_fail("chattr", &["+i", &path.to_string_lossy()])?;
            frozen.paths.push(path);
        }
        Ok(frozen)
    }

    /// What was frozen.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for path in &self.paths {
            run("chattr", &["-i", &path.to_string_lossy()]);
        }
    }
}
