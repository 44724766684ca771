//! The TCP framing of `ipc-demo send` and `ipc-producer --source tcp`.
//!
//! Each tensor is a header, then its bytes. The header, little-endian:
//!
//! | bytes | field |
//! | --- | --- |
//! | 4 | magic `SHMF` |
//! | 1 | id length (1 to 64; 0 marks the end of the stream) |
//! | 1 | dtype code ([`DType::code`]) |
//! | 1 | number of dimensions (0 to 8) |
//! | 1 | reserved, 0 |
//! | 8 | nbytes: the product of the shape times the element size |
//! | 8 x ndim | the shape |
//! | id length | the id, UTF-8 |
//!
//! A stream ends with a header whose id length is 0 (and every other field
//! 0); a connection closed without it is an error.

use shmstream::{DType, TensorMeta, MAX_DIMS, MAX_ID_LEN};
use std::io::{self, Read, Write};

/// The first bytes of every header.
pub const MAGIC: [u8; 4] = *b"SHMF";
const FIXED: usize = 16;

/// One tensor's header.
#[derive(Clone, Debug, PartialEq)]
pub struct FrameHeader {
    /// The tensor id.
    pub id: String,
    /// Dtype and shape (and so nbytes).
    pub meta: TensorMeta,
}

/// Writes a tensor's header.
///
/// # Errors
///
/// An id outside 1 to 64 bytes, and write errors.
pub fn write_header(w: &mut impl Write, id: &str, meta: &TensorMeta) -> io::Result<()> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(invalid(format!(
            "a tensor id must be 1 to {MAX_ID_LEN} bytes long"
        )));
    }
    let mut fixed = [0u8; FIXED];
    fixed[..4].copy_from_slice(&MAGIC);
    fixed[4] = id.len() as u8;
    fixed[5] = meta.dtype().code();
    fixed[6] = meta.shape().len() as u8;
    fixed[8..16].copy_from_slice(&meta.nbytes().to_le_bytes());
    w.write_all(&fixed)?;
    for d in meta.shape() {
        w.write_all(&d.to_le_bytes())?;
    }
    w.write_all(id.as_bytes())
}

/// Writes the end-of-stream header.
///
/// # Errors
///
/// Write errors.
pub fn write_end(w: &mut impl Write) -> io::Result<()> {
    let mut fixed = [0u8; FIXED];
    fixed[..4].copy_from_slice(&MAGIC);
    w.write_all(&fixed)
}

/// Reads the next header; `None` at the end-of-stream header.
///
/// # Errors
///
/// `UnexpectedEof` when the connection closes first, `InvalidData` for a
/// header no sender writes (each with a sentence saying what), read errors.
pub fn read_header(r: &mut impl Read) -> io::Result<Option<FrameHeader>> {
    let mut fixed = [0u8; FIXED];
    r.read_exact(&mut fixed)?;
    if fixed[..4] != MAGIC {
        return Err(invalid(format!(
            "bad magic {:02x?}, expected \"SHMF\"",
            &fixed[..4]
        )));
    }
    let id_len = fixed[4] as usize;
    if id_len == 0 {
        // The end frame: every other field 0 as well.
        if fixed[5..].iter().any(|&b| b != 0) {
            return Err(invalid(
                "an end-of-stream header (id length 0) whose other fields are not 0".to_string(),
            ));
        }
        return Ok(None);
    }
    if fixed[7] != 0 {
        return Err(invalid(format!("reserved byte {}, expected 0", fixed[7])));
    }
    if id_len > MAX_ID_LEN {
        return Err(invalid(format!(
            "id of {id_len} bytes, the limit is {MAX_ID_LEN}"
        )));
    }
    let dtype = DType::from_code(fixed[5])
        .ok_or_else(|| invalid(format!("unknown dtype code {}", fixed[5])))?;
    let ndim = fixed[6] as usize;
    if ndim > MAX_DIMS {
        return Err(invalid(format!(
            "{ndim} dimensions, the limit is {MAX_DIMS}"
        )));
    }
    let nbytes = u64::from_le_bytes(fixed[8..16].try_into().expect("8 bytes"));
    // Shape and id in one read: a header costs two reads of the socket.
    let mut rest = [0u8; 8 * MAX_DIMS + MAX_ID_LEN];
    r.read_exact(&mut rest[..8 * ndim + id_len])?;
    let mut shape = [0u64; MAX_DIMS];
    for (d, b) in shape.iter_mut().zip(rest[..8 * ndim].chunks_exact(8)) {
        *d = u64::from_le_bytes(b.try_into().expect("8 bytes"));
    }
    let id = std::str::from_utf8(&rest[8 * ndim..8 * ndim + id_len])
        .map_err(|_| invalid("the id is not UTF-8".to_string()))?
        .to_string();
    let meta = TensorMeta::new(dtype, &shape[..ndim]).map_err(|e| invalid(e.to_string()))?;
    if meta.nbytes() != nbytes {
        return Err(invalid(format!(
            "tensor {id:?} says {nbytes} bytes but {dtype}{:?} has {}",
            meta.shape(),
            meta.nbytes()
        )));
    }
    Ok(Some(FrameHeader { id, meta }))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_round_trips_and_the_end_reads_as_none() {
        let meta = TensorMeta::new(DType::I64, &[2, 7]).unwrap();
        let mut buf = Vec::new();
        write_header(&mut buf, "s12", &meta).unwrap();
        write_end(&mut buf).unwrap();
        let mut r = &buf[..];
        let h = read_header(&mut r).unwrap().unwrap();
        assert_eq!((h.id.as_str(), h.meta), ("s12", meta));
        assert!(read_header(&mut r).unwrap().is_none());
    }

    #[test]
    fn a_reserved_byte_or_a_dirty_end_frame_is_refused() {
        // Found by the fuzz target `wire`: such a header was accepted, and
        // encoded back to other bytes.
        let meta = TensorMeta::new(DType::U8, &[1]).unwrap();
        let mut buf = Vec::new();
        write_header(&mut buf, "x", &meta).unwrap();
        buf[7] = 1;
        let e = read_header(&mut &buf[..]).unwrap_err();
        assert!(e.to_string().contains("reserved byte 1"), "{e}");
        let mut end = Vec::new();
        write_end(&mut end).unwrap();
        end[9] = 1;
        let e = read_header(&mut &end[..]).unwrap_err();
        assert!(e.to_string().contains("end-of-stream"), "{e}");
    }

    #[test]
    fn a_wrong_byte_count_is_refused() {
        let meta = TensorMeta::new(DType::F32, &[3]).unwrap();
        let mut buf = Vec::new();
        write_header(&mut buf, "x", &meta).unwrap();
        buf[8] = 13;
        let e = read_header(&mut &buf[..]).unwrap_err();
        assert!(e.to_string().contains("says 13 bytes"), "{e}");
    }
}
