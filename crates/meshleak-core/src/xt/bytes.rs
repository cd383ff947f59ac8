//! Bounds-checked reads from kernel blobs. Every length in a blob is untrusted: a read past
//! the end is an error naming what was being read, never a panic.

use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: needs {need} bytes at offset {at}, blob has {len}")]
pub struct Truncated {
    pub what: &'static str,
    pub at: usize,
    pub need: usize,
    pub len: usize,
}

/// A view of a blob with native-endian (x_tables) and big-endian (network) readers.
#[derive(Clone, Copy)]
pub struct Bytes<'a> {
    buf: &'a [u8],
}

impl<'a> Bytes<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Bytes { buf }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn slice(&self, at: usize, n: usize, what: &'static str) -> Result<&'a [u8], Truncated> {
        at.checked_add(n)
            .and_then(|end| self.buf.get(at..end))
            .ok_or(Truncated {
                what,
                at,
                need: n,
                len: self.buf.len(),
            })
    }

    pub(crate) fn sub(
        &self,
        at: usize,
        n: usize,
        what: &'static str,
    ) -> Result<Bytes<'a>, Truncated> {
        self.slice(at, n, what).map(Bytes::new)
    }

    pub fn u8(&self, at: usize, what: &'static str) -> Result<u8, Truncated> {
        Ok(self.slice(at, 1, what)?[0])
    }

    pub fn u16(&self, at: usize, what: &'static str) -> Result<u16, Truncated> {
        Ok(u16::from_ne_bytes(self.array(at, what)?))
    }

    pub fn u32(&self, at: usize, what: &'static str) -> Result<u32, Truncated> {
        Ok(u32::from_ne_bytes(self.array(at, what)?))
    }

    pub fn i32(&self, at: usize, what: &'static str) -> Result<i32, Truncated> {
        Ok(i32::from_ne_bytes(self.array(at, what)?))
    }

    /// A port or other field kept in network byte order.
    pub(crate) fn u16_be(&self, at: usize, what: &'static str) -> Result<u16, Truncated> {
        Ok(u16::from_be_bytes(self.array(at, what)?))
    }

    pub fn ipv4(&self, at: usize, what: &'static str) -> Result<Ipv4Addr, Truncated> {
        Ok(Ipv4Addr::from(self.array::<4>(at, what)?))
    }

    pub fn ipv6(&self, at: usize, what: &'static str) -> Result<Ipv6Addr, Truncated> {
        Ok(Ipv6Addr::from(self.array::<16>(at, what)?))
    }

    /// A NUL-padded name field of `n` bytes.
    pub fn name(&self, at: usize, n: usize, what: &'static str) -> Result<String, Truncated> {
        let raw = self.slice(at, n, what)?;
        let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
        Ok(String::from_utf8_lossy(&raw[..end]).into_owned())
    }

    fn array<const N: usize>(&self, at: usize, what: &'static str) -> Result<[u8; N], Truncated> {
        Ok(self
            .slice(at, N, what)?
            .try_into()
            .expect("slice has N bytes"))
    }

    pub fn hex(&self) -> String {
        self.buf.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_are_errors() {
        let b = Bytes::new(&[1, 0, 0, 0, 0xff]);
        assert_eq!(b.u32(0, "x").unwrap(), u32::from_ne_bytes([1, 0, 0, 0]));
        let e = b.u32(2, "mark").unwrap_err();
        assert_eq!((e.what, e.at, e.need, e.len), ("mark", 2, 4, 5));
        assert!(b.slice(usize::MAX, 2, "huge").is_err());
        assert_eq!(Bytes::new(b"lo\0\0junk").name(0, 8, "iface").unwrap(), "lo");
    }
}
