//! `ByteReader`: reads fixed fields off the front of untrusted bytes without ever indexing
//! past the end.

/// The input ended before the field being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Truncated;

/// A cursor over untrusted bytes. Every read checks the length first and fails with
/// [`Truncated`] instead of panicking.
pub(crate) struct ByteReader<'a> {
    rest: &'a [u8],
}

impl<'a> ByteReader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// The next `len` bytes.
    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], Truncated> {
        let (head, tail) = self.rest.split_at_checked(len).ok_or(Truncated)?;
        self.rest = tail;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Truncated> {
        let bytes = self.take(N)?;
        bytes.try_into().map_err(|_| Truncated)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Truncated> {
        self.array::<1>().map(|[byte]| byte)
    }

    /// A big-endian `u16`.
    pub(crate) fn u16(&mut self) -> Result<u16, Truncated> {
        self.array::<2>().map(u16::from_be_bytes)
    }

    /// Whether every byte has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_stops_at_the_end() {
        let mut reader = ByteReader::new(&[1, 0, 2, 3, 4]);
        assert_eq!(reader.u8(), Ok(1));
        assert_eq!(reader.u16(), Ok(2));
        assert_eq!(reader.array::<3>(), Err(Truncated));
        assert_eq!(reader.take(2), Ok(&[3u8, 4][..]));
        assert!(reader.is_empty());
        assert_eq!(reader.u8(), Err(Truncated));
    }
}
