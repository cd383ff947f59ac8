//! Reads /proc files whole in as few system calls as the kernel allows. `fs::read` first
//! asks for the file's size (statx and lseek), which procfs reports as 0, then grows its
//! buffer from a 32-byte probe: about ten reads for one 1.4 KB status file. A scan reads a
//! few such files for each of a node's thousands of processes.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Size of the first read: every per-process and per-namespace file meshleak reads
/// usually fits.
const FIRST_READ: usize = 4096;

/// The rest of `file`, read until end of file.
pub(crate) fn read(mut file: File) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; FIRST_READ];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

/// The file at `path`, as text; not UTF-8 is an error.
pub(crate) fn read_string(path: &Path) -> io::Result<String> {
    String::from_utf8(read(File::open(path)?)?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_files_larger_than_the_first_read() {
        let path = std::env::temp_dir().join(format!("meshleak-procfile-{}", std::process::id()));
        let text = "x".repeat(super::FIRST_READ * 3 + 5);
        std::fs::write(&path, &text).unwrap();
        let read = super::read_string(&path);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(read.unwrap(), text);
    }
}
