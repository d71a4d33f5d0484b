//! The `guidstore-wal` VFS: SQLite's default VFS, except that the WAL frames of one commit reach
//! the file in one write instead of two per page.
//!
//! SQLite writes each WAL frame as two writes, its 24-byte header and then the page, so a commit
//! that dirties 40 pages makes 80 `pwrite` calls; on the write path of a busy server those were
//! about a quarter of the writer thread's time. Only the write connection uses this VFS, and only
//! its WAL is wrapped: the database file, journals and temporary files are the default VFS's own
//! files, untouched.
//!
//! The WAL wrapper keeps a buffer of writes that continue one another and writes it out, through
//! the wrapped file:
//! - right after the data of a commit frame (a frame whose header has a non-zero "database size"
//!   field) is written. SQLite publishes a commit in the WAL index only after that, so a reader
//!   never looks for a frame that is still in the buffer, and a crash after the commit returned
//!   cannot lose it (a crash before it returned loses only an uncommitted transaction, as it could
//!   without the buffer);
//! - before any read, sync, truncate, size query, file control, lock call or close of the file;
//! - when a write does not continue the buffer, or the buffer would pass [`BUFFER_LIMIT`].
//!
//! A write that does not continue the previous one and is not a frame header is SQLite rewriting
//! a page it already wrote in the same transaction (after spilling its cache), which may be
//! followed by rewritten frame headers. From then on writes go straight to the file, until the WAL
//! header is written again (the WAL starts over).

use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name the VFS is registered under.
pub(crate) const NAME: &CStr = c"guidstore-wal";

/// The largest buffer kept before it is written out.
const BUFFER_LIMIT: usize = 8 << 20;

/// The most buffer capacity kept between commits (a commit of about 250 pages fits).
const KEPT_CAPACITY: usize = 1 << 20;

/// The most bytes handed to the default VFS in one write: its `unixWrite` takes at most
/// 128 KiB - 1 per call (it masks the length with `0x1ffff`).
const WRITE_LIMIT: usize = 124 << 10;

/// Size of a WAL frame header, and of the WAL header.
const FRAME_HEADER: usize = 24;
const WAL_HEADER: usize = 32;

/// A WAL opened through this VFS. SQLite allocates `szOsFile` bytes for it: this struct, then the
/// default VFS's file at [`real_offset`].
#[repr(C)]
struct WalFile {
    /// Must come first: SQLite sees a `sqlite3_file`.
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    buffer: Vec<u8>,
    /// File offset of `buffer[0]`.
    buffer_offset: i64,
    /// Where the data of a commit frame whose header was just buffered will be written.
    commit_data_at: Option<i64>,
    /// Where the last write ended.
    next_offset: Option<i64>,
    /// Writes go straight to the file (see the module documentation).
    write_through: bool,
}

/// Where the default VFS's file starts in the space SQLite allocates for a file.
const fn real_offset() -> usize {
    std::mem::size_of::<WalFile>().next_multiple_of(16)
}

/// The default VFS, which this one wraps.
struct DefaultVfs(*mut ffi::sqlite3_vfs);
// SAFETY: the pointer is to a VFS structure that lives for the whole process and that SQLite
// itself shares between threads.
unsafe impl Send for DefaultVfs {}
// SAFETY: as for `Send`: the structure is only read (through SQLite's own calls, which are
// thread-safe), never written, after `register` stored it.
unsafe impl Sync for DefaultVfs {}

static DEFAULT: OnceLock<DefaultVfs> = OnceLock::new();

/// Registers the VFS (once per process). Whether it is available; when it is not, connections
/// should use the default VFS.
pub(crate) fn register() -> bool {
    static OURS: OnceLock<bool> = OnceLock::new();
    *OURS.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find initializes SQLite and returns the default VFS, which lives as
        // long as the process. The copy we register is leaked, so it does too.
        unsafe {
            let default = ffi::sqlite3_vfs_find(std::ptr::null());
            if default.is_null() || (*default).szOsFile < 0 {
                return false;
            }
            DEFAULT.get_or_init(|| DefaultVfs(default));
            let mut vfs = std::ptr::read(default);
            vfs.zName = NAME.as_ptr();
            vfs.pNext = std::ptr::null_mut();
            vfs.szOsFile = (real_offset() + (*default).szOsFile as usize) as c_int;
            vfs.xOpen = Some(open);
            // The other methods are the default VFS's; they receive this copy, which has the same
            // `pAppData` and `mxPathname` as the original.
            let vfs = Box::into_raw(Box::new(vfs));
            ffi::sqlite3_vfs_register(vfs, 0) == ffi::SQLITE_OK
        }
    })
}

fn default_vfs() -> *mut ffi::sqlite3_vfs {
    DEFAULT.get().map_or(std::ptr::null_mut(), |default| default.0)
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let default = default_vfs();
    // SAFETY: `default` is the registered default VFS (non-null: `register` succeeded before this
    // VFS existed); `file` points to `szOsFile` bytes, enough for a `WalFile` followed by the
    // default VFS's file, or for the default VFS's file alone.
    unsafe {
        let Some(default_open) = (*default).xOpen else { return ffi::SQLITE_CANTOPEN };
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            return default_open(default, name, file, flags, out_flags);
        }
        let real = file.cast::<u8>().add(real_offset()).cast::<ffi::sqlite3_file>();
        let rc = default_open(default, name, real, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            (*file).pMethods = std::ptr::null();
            return rc;
        }
        file.cast::<WalFile>().write(WalFile {
            base: ffi::sqlite3_file { pMethods: &WAL_METHODS },
            real,
            buffer: Vec::new(),
            buffer_offset: 0,
            commit_data_at: None,
            next_offset: None,
            write_through: false,
        });
        ffi::SQLITE_OK
    }
}

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

/// The `WalFile` behind a file SQLite hands to one of `WAL_METHODS`.
///
/// # Safety
/// `file` must have been opened by [`open`] with `SQLITE_OPEN_WAL` and not yet closed; SQLite
/// calls a file's methods from one thread at a time.
unsafe fn wal<'a>(file: *mut ffi::sqlite3_file) -> &'a mut WalFile {
    // SAFETY: by this function's contract `file` was initialized as a `WalFile` by `open` (its
    // first field is the `sqlite3_file` SQLite sees), is still open, and no other thread uses it
    // now, so a unique reference to it is sound for the duration of the SQLite call.
    unsafe { &mut *file.cast::<WalFile>() }
}

/// The wrapped file's methods.
fn methods(wal: &WalFile) -> &ffi::sqlite3_io_methods {
    // SAFETY: the default VFS's open succeeded, so the wrapped file has its methods.
    unsafe { &*(*wal.real).pMethods }
}

impl WalFile {
    /// Writes `data` at `offset` through the wrapped file.
    fn write_through(&self, data: *const c_void, amount: c_int, offset: i64) -> c_int {
        match methods(self).xWrite {
            // SAFETY: `data` holds `amount` bytes (SQLite's, or our buffer).
            Some(write) => unsafe { write(self.real, data, amount, offset) },
            None => ffi::SQLITE_IOERR_WRITE,
        }
    }

    /// Writes out the buffer. On failure the buffer is dropped: the transaction it belonged to
    /// fails, and SQLite writes its frames again (or others) at the same offsets.
    fn flush(&mut self) -> c_int {
        let mut rc = ffi::SQLITE_OK;
        let mut offset = self.buffer_offset;
        for chunk in self.buffer.chunks(WRITE_LIMIT) {
            rc = self.write_through(chunk.as_ptr().cast(), chunk.len() as c_int, offset);
            if rc != ffi::SQLITE_OK {
                break;
            }
            offset += chunk.len() as i64;
        }
        self.buffer.clear();
        // A big transaction (a purge) may have grown the buffer to BUFFER_LIMIT: do not keep it.
        self.buffer.shrink_to(KEPT_CAPACITY);
        rc
    }

    fn write(&mut self, data: &[u8], offset: i64) -> c_int {
        let continues = self.next_offset == Some(offset);
        if offset == 0 && data.len() == WAL_HEADER {
            // The WAL starts over: buffering is safe again.
            self.write_through = false;
        } else if !continues && self.next_offset.is_some() && data.len() != FRAME_HEADER {
            self.write_through = true;
        }
        self.next_offset = Some(offset + data.len() as i64);
        let ends_commit = self.commit_data_at == Some(offset);
        if ends_commit {
            self.commit_data_at = None;
        }
        let contiguous = !self.buffer.is_empty() && self.buffer_offset + self.buffer.len() as i64 == offset;
        if !contiguous || self.buffer.len() + data.len() > BUFFER_LIMIT || self.write_through {
            let rc = self.flush();
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        if self.write_through {
            // SQLite's own writes are at most a page (64 KiB): one call of the default VFS.
            return self.write_through(data.as_ptr().cast(), data.len() as c_int, offset);
        }
        if self.buffer.is_empty() {
            self.buffer_offset = offset;
        }
        self.buffer.extend_from_slice(data);
        if ends_commit {
            return self.flush();
        }
        if data.len() == FRAME_HEADER && data[4..8] != [0; 4] {
            self.commit_data_at = Some(offset + FRAME_HEADER as i64);
        }
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite calls `close` once on a file `open` initialized as a `WalFile` (the contract of
    // `wal`), from one thread; after it SQLite does not use the file again, so its `WalFile` is
    // dropped here and `pMethods` cleared.
    unsafe {
        let wal = wal(file);
        let flushed = wal.flush();
        let closed = methods(wal).xClose.map_or(ffi::SQLITE_OK, |close| close(wal.real));
        std::ptr::drop_in_place(file.cast::<WalFile>());
        (*file).pMethods = std::ptr::null();
        if flushed != ffi::SQLITE_OK { flushed } else { closed }
    }
}

unsafe extern "C" fn write(file: *mut ffi::sqlite3_file, data: *const c_void, amount: c_int, offset: i64) -> c_int {
    let Ok(length) = usize::try_from(amount) else { return ffi::SQLITE_IOERR_WRITE };
    // SAFETY: SQLite calls `write` only on an open file of `WAL_METHODS` (the contract of `wal`),
    // from one thread at a time, and passes `amount` (checked non-negative) readable bytes at `data`.
    unsafe { wal(file).write(std::slice::from_raw_parts(data.cast::<u8>(), length), offset) }
}

/// Defines a method that writes out the buffer, then calls the wrapped file's method.
macro_rules! flush_then_forward {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*), $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            // SAFETY: SQLite calls these methods only on an open file of `WAL_METHODS` (the
            // contract of `wal`), from one thread at a time; the arguments are SQLite's, passed on
            // unchanged to the wrapped file, whose method has the same contract.
            unsafe {
                let wal = wal(file);
                let rc = wal.flush();
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                match methods(wal).$method {
                    Some(method) => method(wal.real $(, $arg)*),
                    None => $missing,
                }
            }
        }
    };
}

flush_then_forward!(read, xRead, (data: *mut c_void, amount: c_int, offset: i64), ffi::SQLITE_IOERR_READ);
flush_then_forward!(truncate, xTruncate, (size: i64), ffi::SQLITE_IOERR_TRUNCATE);
flush_then_forward!(sync, xSync, (flags: c_int), ffi::SQLITE_IOERR_FSYNC);
flush_then_forward!(file_size, xFileSize, (size: *mut i64), ffi::SQLITE_IOERR_FSTAT);
flush_then_forward!(lock, xLock, (level: c_int), ffi::SQLITE_IOERR_LOCK);
flush_then_forward!(unlock, xUnlock, (level: c_int), ffi::SQLITE_IOERR_UNLOCK);
flush_then_forward!(check_reserved_lock, xCheckReservedLock, (out: *mut c_int), ffi::SQLITE_IOERR_CHECKRESERVEDLOCK);
flush_then_forward!(file_control, xFileControl, (op: c_int, arg: *mut c_void), ffi::SQLITE_NOTFOUND);
flush_then_forward!(shm_map, xShmMap, (page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void), ffi::SQLITE_IOERR_SHMMAP);
flush_then_forward!(shm_lock, xShmLock, (offset: c_int, n: c_int, flags: c_int), ffi::SQLITE_IOERR_SHMLOCK);
flush_then_forward!(shm_unmap, xShmUnmap, (delete: c_int), ffi::SQLITE_OK);
flush_then_forward!(fetch, xFetch, (offset: i64, amount: c_int, out: *mut *mut c_void), {
    *out = std::ptr::null_mut();
    ffi::SQLITE_OK
});
flush_then_forward!(unfetch, xUnfetch, (offset: i64, page: *mut c_void), ffi::SQLITE_OK);

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite calls this only on an open file of `WAL_METHODS` (the contract of `wal`), from
    // one thread at a time; the wrapped file's method is called on the wrapped file.
    unsafe {
        let wal = wal(file);
        methods(wal).xSectorSize.map_or(4096, |method| method(wal.real))
    }
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite calls this only on an open file of `WAL_METHODS` (the contract of `wal`), from
    // one thread at a time; the wrapped file's method is called on the wrapped file.
    unsafe {
        let wal = wal(file);
        methods(wal).xDeviceCharacteristics.map_or(0, |method| method(wal.real))
    }
}

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: SQLite calls this only on an open file of `WAL_METHODS` (the contract of `wal`), from
    // one thread at a time; the wrapped file's method is called on the wrapped file.
    unsafe {
        let wal = wal(file);
        if let Some(method) = methods(wal).xShmBarrier {
            method(wal.real);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use proptest::prelude::*;
    use rusqlite::{Connection, OpenFlags, params};

    use super::*;

    fn open_writer(path: &Path, cache_pages: i64, synchronous: &str) -> Connection {
        assert!(register());
        let connection = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), NAME).unwrap();
        connection.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(())).unwrap();
        connection.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        connection.pragma_update(None, "cache_size", cache_pages).unwrap();
        // FULL syncs (and so writes out the buffer) at every commit; NORMAL does not.
        connection.pragma_update(None, "synchronous", synchronous).unwrap();
        connection.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, k BLOB UNIQUE, v BLOB)").unwrap();
        connection
    }

    /// What a `kill -9` now would leave: the database and WAL files as they are in the file system
    /// (copied while the writer still has them open), opened and recovered by plain SQLite.
    fn after_a_crash(path: &Path, dir: &Path) -> Connection {
        let copy = dir.join("copy.db");
        let _ = std::fs::remove_file(dir.join("copy.db-wal"));
        let _ = std::fs::remove_file(dir.join("copy.db-shm"));
        std::fs::copy(path, &copy).unwrap();
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::copy(wal, dir.join("copy.db-wal")).unwrap();
        Connection::open(&copy).unwrap()
    }

    fn summary(connection: &Connection) -> (i64, i64) {
        connection
            .query_row("SELECT count(*), coalesce(sum(length(v)), 0) FROM t", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
    }

    /// Transactions: how many rows each inserts, their value size, and how many it deletes.
    fn transactions() -> impl Strategy<Value = Vec<(usize, usize, usize)>> {
        prop::collection::vec((1usize..300, 1usize..6000, 0usize..50), 1..12)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// After every commit, another connection and a crash copy both see exactly what was
        /// committed, whatever the transaction sizes, with a page cache small enough that big
        /// transactions spill and rewrite frames (the write-through path).
        #[test]
        fn every_commit_is_in_the_file_when_it_returns(
            txns in transactions(),
            cache_pages in prop::sample::select(vec![8i64, 2000]),
            synchronous in prop::sample::select(vec!["FULL", "NORMAL"]),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("db");
            let writer = open_writer(&path, cache_pages, synchronous);
            let reader = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
            let mut next_key = 0u64;
            let mut model = std::collections::BTreeMap::new();
            for (rows, size, deletes) in txns {
                writer.execute_batch("BEGIN IMMEDIATE").unwrap();
                for _ in 0..rows {
                    next_key += 1;
                    // Keys spread over the index, as random GUIDs are.
                    let key = next_key.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes();
                    writer.execute("INSERT INTO t (k, v) VALUES (?1, ?2)", params![key, vec![7u8; size]]).unwrap();
                    model.insert(key, size as i64);
                }
                writer.execute("DELETE FROM t WHERE id IN (SELECT id FROM t ORDER BY k LIMIT ?1)", [deletes]).unwrap();
                for _ in 0..deletes {
                    model.pop_first();
                }
                writer.execute_batch("COMMIT").unwrap();
                // Looked at before the writer does anything else (a read of its own would write
                // out the buffer).
                let committed = (model.len() as i64, model.values().sum::<i64>());
                prop_assert_eq!(summary(&reader), committed);
                let recovered = after_a_crash(&path, dir.path());
                prop_assert_eq!(summary(&recovered), committed);
                let check: String = recovered.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
                prop_assert_eq!(check, "ok");
            }
            prop_assert_eq!(summary(&writer), (model.len() as i64, model.values().sum::<i64>()));
        }
    }

    #[test]
    fn a_commit_bigger_than_one_write_is_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let writer = open_writer(&path, 2000, "NORMAL");
        writer.execute_batch("BEGIN").unwrap();
        for key in 0..40u32 {
            writer.execute("INSERT INTO t (k, v) VALUES (?1, ?2)", params![key, vec![1u8; 100_000]]).unwrap();
        }
        writer.execute_batch("COMMIT").unwrap();
        assert_eq!(summary(&after_a_crash(&path, dir.path())), (40, 4_000_000));
    }

    #[test]
    fn the_wal_starts_over_and_stays_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let writer = open_writer(&path, 2000, "NORMAL");
        let checkpointer = Connection::open(&path).unwrap();
        for round in 0..5i64 {
            for key in 0..20i64 {
                writer
                    .execute("INSERT INTO t (k, v) VALUES (?1, ?2)", params![round * 100 + key, vec![3u8; 500]])
                    .unwrap();
            }
            let (busy, _, _): (i64, i64, i64) = checkpointer
                .query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap();
            assert_eq!(busy, 0);
            assert_eq!(summary(&after_a_crash(&path, dir.path())).0, (round + 1) * 20);
        }
        drop(writer);
        assert_eq!(summary(&Connection::open(&path).unwrap()).0, 100);
    }
}
