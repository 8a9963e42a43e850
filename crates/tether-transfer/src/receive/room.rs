//! Room at the destination: what an offer needs on disk (bytes in whole blocks, a block per
//! new directory, an inode per file, resume record and directory), checked against what the
//! file system has free less the receiver's reserves before `Accept`; and the space reserve
//! checked again each time a partial file is allocated while receiving (`disk::allocate`).

use std::os::fd::AsFd;
use std::path::Path;

use crate::error::LocalError;
use crate::storage::Reserve;

/// What an offer may still need at the destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Need {
    /// Bytes of the files' data (each file rounded up to whole blocks, plus a block for each
    /// resume record and each new directory).
    pub(crate) bytes: u64,
    /// The bytes of file data alone, as offered (what a quota counts).
    pub(crate) data: u64,
    /// Inodes: one per file, two per resumable file (its record and the record's
    /// replacement), one per new directory.
    pub(crate) inodes: u64,
}

impl Need {
    /// Adds a file of `size` bytes; `resumable` files keep a resume record.
    pub(crate) fn file(&mut self, size: u64, resumable: bool, block: u64) {
        self.data = self.data.saturating_add(size);
        self.bytes = self.bytes.saturating_add(round_up(size, block));
        self.inodes = self.inodes.saturating_add(1);
        if resumable {
            self.bytes = self.bytes.saturating_add(block);
            self.inodes = self.inodes.saturating_add(2);
        }
    }

    /// Adds a new directory.
    pub(crate) fn dir(&mut self, block: u64) {
        self.bytes = self.bytes.saturating_add(block);
        self.inodes = self.inodes.saturating_add(1);
    }
}

/// `size` rounded up to whole blocks of `block` bytes.
fn round_up(size: u64, block: u64) -> u64 {
    if block <= 1 {
        return size;
    }
    size.div_ceil(block).saturating_mul(block)
}

/// What the destination's file system has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FsRoom {
    /// Its block size (at least 1).
    pub(crate) block: u64,
    /// Its size in bytes.
    pub(crate) total_bytes: u64,
    /// Bytes free to this user.
    pub(crate) free_bytes: u64,
    /// Its inode count (0: none fixed, as btrfs reports).
    pub(crate) total_inodes: u64,
    /// Inodes free to this user.
    pub(crate) free_inodes: u64,
}

impl FsRoom {
    /// The file system holding `fd` (`path` for messages).
    pub(crate) fn of(fd: impl AsFd, path: &Path) -> Result<Self, LocalError> {
        let stat = rustix::fs::fstatvfs(fd)
            .map_err(|e| LocalError::io("checking free space", path, e.into()))?;
        let frsize = stat.f_frsize.max(1);
        Ok(FsRoom {
            block: stat.f_bsize.max(frsize),
            total_bytes: stat.f_blocks.saturating_mul(frsize),
            free_bytes: stat.f_bavail.saturating_mul(frsize),
            total_inodes: stat.f_files,
            free_inodes: stat.f_favail,
        })
    }

    /// Whether `need` fits, leaving the reserves free (`path` for messages).
    pub(crate) fn check(
        &self,
        need: Need,
        space: Reserve,
        inodes: Reserve,
        path: &Path,
    ) -> Result<(), LocalError> {
        if need.bytes > self.free_bytes {
            return Err(LocalError::DiskFull {
                path: path.to_owned(),
                needed: need.bytes,
                available: self.free_bytes,
            });
        }
        let keep = space.of(self.total_bytes);
        if need.bytes.saturating_add(keep) > self.free_bytes {
            return Err(LocalError::ReserveReached {
                path: path.to_owned(),
                needed: need.bytes,
                available: self.free_bytes,
                reserve: keep,
            });
        }
        if self.total_inodes > 0 {
            let keep = inodes.of(self.total_inodes);
            if need.inodes.saturating_add(keep) > self.free_inodes {
                return Err(LocalError::InodesShort {
                    path: path.to_owned(),
                    needed: need.inodes,
                    available: self.free_inodes,
                    reserve: keep,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{FsRoom, Need};
    use crate::error::LocalError;
    use crate::storage::Reserve;

    fn room() -> FsRoom {
        FsRoom {
            block: 4096,
            total_bytes: 100 << 20,
            free_bytes: 10 << 20,
            total_inodes: 1000,
            free_inodes: 100,
        }
    }

    #[test]
    fn files_count_whole_blocks_and_directories_a_block_each() {
        let mut need = Need::default();
        need.file(1, false, 4096);
        need.file(0, false, 4096);
        need.file(300 << 10, true, 4096);
        need.dir(4096);
        assert_eq!(need.bytes, 4096 + (300 << 10) + 4096 + 4096);
        assert_eq!(need.data, 1 + (300 << 10));
        assert_eq!(need.inodes, 3 + 2 + 1);
    }

    #[test]
    fn the_reserves_are_kept() {
        let path = Path::new("/d");
        let fits = Need {
            bytes: 5 << 20,
            data: 5 << 20,
            inodes: 40,
        };
        room()
            .check(fits, Reserve::DEFAULT_SPACE, Reserve::DEFAULT_INODES, path)
            .unwrap();
        let into_reserve = Need {
            bytes: 6 << 20,
            ..fits
        };
        assert!(matches!(
            room().check(
                into_reserve,
                Reserve::Absolute(5 << 20),
                Reserve::Absolute(0),
                path
            ),
            Err(LocalError::ReserveReached { .. })
        ));
        let too_many = Need { inodes: 96, ..fits };
        assert!(matches!(
            room().check(
                too_many,
                Reserve::Absolute(0),
                Reserve::DEFAULT_INODES,
                path
            ),
            Err(LocalError::InodesShort {
                needed: 96,
                available: 100,
                reserve: 50,
                ..
            })
        ));
        let no_fixed_inodes = FsRoom {
            total_inodes: 0,
            free_inodes: 0,
            ..room()
        };
        no_fixed_inodes
            .check(
                too_many,
                Reserve::Absolute(0),
                Reserve::DEFAULT_INODES,
                path,
            )
            .unwrap();
    }
}
