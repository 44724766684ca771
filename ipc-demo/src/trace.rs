//! The replay trace of SPEC section 6: one JSON event per line, and the
//! tensors a `put` carries, encoded to and decoded from their bytes.
//!
//! One extension for tensors of any size: a `register` may say how many
//! bytes to reserve, `{"op":"register","id":"t0","nbytes":65536}`
//! (`pre_read_register_sized`); without it the stream's default item size
//! is reserved, as the reference's `pre_read_register` does.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use shmstream::{DType, TensorMeta};

/// The most chunks one `poll` pops unless it says `max`.
pub const DEFAULT_POLL_MAX: u64 = 100_000;

/// One line of a trace.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum Event {
    /// `pre_read_register(id)`, or with `nbytes`
    /// `pre_read_register_sized(id, nbytes)`.
    Register {
        /// The tensor id.
        id: String,
        /// Bytes to reserve (default: the stream's default item size,
        /// `--item-bytes`).
        nbytes: Option<u64>,
    },
    /// `put(id, tensor)`: without `data`, `dtype` or `shape`, one f32
    /// holding the item's registration index.
    Put {
        /// The tensor id.
        id: String,
        /// Element type (default f32).
        dtype: Option<String>,
        /// Shape (default: `[len(data)]`).
        shape: Option<Vec<u64>>,
        /// Elements, row-major (default: zeros).
        data: Option<Vec<Value>>,
    },
    /// `signal_done()`.
    Done {},
    /// Pop one chunk if one is ready.
    Pop {},
    /// Pop while ready, at most `max` chunks.
    Poll {
        /// At most this many chunks (default 100000).
        max: Option<u64>,
    },
}

/// Parses one line.
///
/// # Errors
///
/// A sentence naming what is malformed.
pub fn parse(line: &str) -> Result<Event, String> {
    let value: Value = serde_json::from_str(line)
        .map_err(|e| format!("not valid JSON ({})", strip_position(&e)))?;
    if !value.is_object() {
        return Err("an event must be a JSON object".to_string());
    }
    if value.get("op").is_none() {
        return Err("the event has no \"op\"".to_string());
    }
    serde_json::from_value(value).map_err(|e| format!("malformed event: {e}"))
}

fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// The longest trace line the replay reads, in bytes (newline excluded).
pub const MAX_LINE_BYTES: usize = 16 << 20;
/// The largest tensor one `put` may carry, in bytes, whatever its
/// reservation: a put without `data` is zeros of this size at most.
pub const MAX_TENSOR_BYTES: u64 = 16 << 20;
/// The largest `max` a `poll` may ask for.
pub const MAX_POLL: u64 = 1_000_000;

/// The tensor a `put` stands for: its metadata and bytes.
///
/// Every size comes from the input, so each is checked before anything is
/// allocated: the number of elements (the product of the shape) and the
/// byte count (elements x dtype size) must fit in 64 bits, and `check`
/// (the caller's limits: the bytes reserved for the id,
/// [`MAX_TENSOR_BYTES`]) sees the metadata before the bytes exist.
///
/// # Errors
///
/// An unknown dtype, too many dimensions, a size past 64 bits, a size
/// `check` refuses, a shape that disagrees with the data, a value the dtype
/// cannot hold.
pub fn tensor(
    index: u64,
    dtype: Option<&str>,
    shape: Option<&[u64]>,
    data: Option<&[Value]>,
    check: impl FnOnce(&TensorMeta) -> Result<(), String>,
) -> Result<(TensorMeta, Vec<u8>), String> {
    if dtype.is_none() && shape.is_none() && data.is_none() {
        let meta = TensorMeta::new(DType::F32, &[1]).expect("a valid shape");
        check(&meta)?;
        return Ok((meta, (index as f32).to_le_bytes().to_vec()));
    }
    let dtype: DType = dtype.unwrap_or("f32").parse().map_err(|e| format!("{e}"))?;
    let shape = match (shape, data) {
        (Some(s), _) => s.to_vec(),
        (None, Some(d)) => vec![d.len() as u64],
        (None, None) => return Err("a put with a dtype needs a shape or data".to_string()),
    };
    let count = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} has more elements than fit in 64 bits"))?;
    let meta = TensorMeta::new(dtype, &shape).map_err(|e| match e {
        shmstream::StreamError::ShapeOverflow => format!(
            "a {dtype} tensor of shape {shape:?} ({count} elements of {} bytes) has more bytes than fit in 64 bits",
            dtype.size()
        ),
        e => format!("shape {shape:?}: {e}"),
    })?;
    check(&meta)?;
    // From here on, nbytes is within the caller's limits.
    let nbytes =
        usize::try_from(meta.nbytes()).map_err(|_| "the tensor is too large".to_string())?;
    let Some(data) = data else {
        return Ok((meta, vec![0; nbytes]));
    };
    if data.len() as u64 != count {
        return Err(format!(
            "shape {shape:?} holds {count} elements but data has {}",
            data.len()
        ));
    }
    let mut bytes = Vec::with_capacity(nbytes);
    for (i, v) in data.iter().enumerate() {
        encode(dtype, v, &mut bytes)
            .ok_or_else(|| format!("data[{i}] = {v} is not a valid {dtype}"))?;
    }
    Ok((meta, bytes))
}

fn encode(dtype: DType, v: &Value, out: &mut Vec<u8>) -> Option<()> {
    macro_rules! int {
        ($t:ty) => {{
            let x: $t = match v {
                Value::Number(n) => n
                    .as_i64()
                    .and_then(|i| <$t>::try_from(i).ok())
                    .or_else(|| n.as_u64().and_then(|u| <$t>::try_from(u).ok()))?,
                _ => return None,
            };
            out.extend_from_slice(&x.to_le_bytes());
        }};
    }
    match dtype {
        DType::Bool => out.push(match v {
            Value::Bool(b) => *b as u8,
            Value::Number(n) if n.as_u64() == Some(0) => 0,
            Value::Number(n) if n.as_u64() == Some(1) => 1,
            _ => return None,
        }),
        DType::U8 => int!(u8),
        DType::I8 => int!(i8),
        DType::I16 => int!(i16),
        DType::U16 => int!(u16),
        DType::I32 => int!(i32),
        DType::U32 => int!(u32),
        DType::I64 => int!(i64),
        DType::U64 => int!(u64),
        DType::F32 => out.extend_from_slice(&(v.as_f64()? as f32).to_le_bytes()),
        DType::F64 => out.extend_from_slice(&v.as_f64()?.to_le_bytes()),
        DType::F16 => out.extend_from_slice(&f32_to_f16(v.as_f64()? as f32).to_le_bytes()),
        DType::BF16 => out.extend_from_slice(&f32_to_bf16(v.as_f64()? as f32).to_le_bytes()),
    }
    Some(())
}

/// One element read back, printed by `replay --values`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Element {
    /// bool.
    Bool(bool),
    /// Signed integers.
    Int(i64),
    /// Unsigned integers.
    UInt(u64),
    /// f32 (also f16 and bf16, widened), printed in its shortest form.
    F32(f32),
    /// f64.
    F64(f64),
}

/// The elements of a tensor's bytes.
pub fn decode(dtype: DType, bytes: &[u8]) -> Vec<Element> {
    let n = dtype.size();
    bytes
        .chunks_exact(n)
        .map(|b| {
            let mut w = [0u8; 8];
            w[..n].copy_from_slice(b);
            let u = u64::from_le_bytes(w);
            match dtype {
                DType::Bool => Element::Bool(u != 0),
                DType::U8 | DType::U16 | DType::U32 | DType::U64 => Element::UInt(u),
                DType::I8 => Element::Int(u as u8 as i8 as i64),
                DType::I16 => Element::Int(u as u16 as i16 as i64),
                DType::I32 => Element::Int(u as u32 as i32 as i64),
                DType::I64 => Element::Int(u as i64),
                DType::F32 => Element::F32(f32::from_bits(u as u32)),
                DType::F64 => Element::F64(f64::from_bits(u)),
                DType::F16 => Element::F32(f16_to_f32(u as u16)),
                DType::BF16 => Element::F32(f32::from_bits((u as u32) << 16)),
            }
        })
        .collect()
}

/// bfloat16 of `x`, rounded to nearest, ties to even.
pub fn f32_to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// IEEE half precision of `x`, rounded to nearest, ties to even.
pub fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        // Subnormal: shift the mantissa (with its hidden bit) into place.
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rest = m & ((1 << shift) - 1);
        let mut h = m >> shift;
        if rest > half || (rest == half && h & 1 == 1) {
            h += 1;
        }
        return sign | h as u16;
    }
    let mut h = ((e as u32) << 10) | (man >> 13);
    let rest = man & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) {
        h += 1; // may carry into the exponent, up to infinity: correct
    }
    sign | h as u16
}

/// f32 of a half-precision value.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: the value is m * 2^-24.
            let v = m as f32 * 2f32.powi(-24);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_and_unknown_keys_are_refused() {
        assert_eq!(
            parse(r#"{"op":"register","id":"t0"}"#),
            Ok(Event::Register {
                id: "t0".into(),
                nbytes: None
            })
        );
        assert_eq!(
            parse(r#"{"op":"register","id":"t0","nbytes":65536}"#),
            Ok(Event::Register {
                id: "t0".into(),
                nbytes: Some(65536)
            })
        );
        assert!(parse(r#"{"op":"register","id":"t0","nbytes":-1}"#).is_err());
        assert_eq!(
            parse(r#"{"op":"poll","max":3}"#),
            Ok(Event::Poll { max: Some(3) })
        );
        assert_eq!(parse(r#"{"op":"done"}"#), Ok(Event::Done {}));
        assert!(parse(r#"{"op":"pop","x":1}"#)
            .unwrap_err()
            .contains("unknown field"));
        assert!(parse(r#"{"op":"jump"}"#)
            .unwrap_err()
            .contains("unknown variant"));
        assert!(parse(r#"{"op":"register"}"#)
            .unwrap_err()
            .contains("missing field"));
        assert!(parse(r#"{"op":"register","#)
            .unwrap_err()
            .starts_with("not valid JSON"));
    }

    #[test]
    fn tensors_encode_and_decode() {
        let any = |_: &TensorMeta| Ok(());
        let (meta, bytes) = tensor(5, None, None, None, any).unwrap();
        assert_eq!(decode(meta.dtype(), &bytes), [Element::F32(5.0)]);
        let data = [serde_json::json!(1.5), serde_json::json!(2.5)];
        let (meta, bytes) = tensor(0, Some("f32"), Some(&[2]), Some(&data), any).unwrap();
        assert_eq!(meta.nbytes(), 8);
        assert_eq!(
            decode(meta.dtype(), &bytes),
            [Element::F32(1.5), Element::F32(2.5)]
        );
        assert!(tensor(0, Some("i8"), None, Some(&[serde_json::json!(300)]), any).is_err());
        assert!(tensor(0, Some("f32"), Some(&[3]), Some(&data), any).is_err());
    }

    #[test]
    fn sizes_are_checked_before_anything_is_allocated() {
        let limit = |m: &TensorMeta| match m.nbytes() {
            n if n > 4096 => Err(format!("{n} bytes over 4096")),
            _ => Ok(()),
        };
        // 2^40 f32 elements without data: refused by the limit, no 4 TiB vector.
        let e = tensor(0, Some("f32"), Some(&[1 << 40]), None, limit).unwrap_err();
        assert_eq!(e, "4398046511104 bytes over 4096");
        // More elements than 64 bits count.
        let e = tensor(0, Some("u8"), Some(&[1 << 32, 1 << 32]), None, limit).unwrap_err();
        assert!(e.contains("more elements than fit in 64 bits"), "{e}");
        // Elements that fit, bytes that do not.
        let e = tensor(0, Some("f64"), Some(&[1 << 62]), None, limit).unwrap_err();
        assert!(e.contains("more bytes than fit in 64 bits"), "{e}");
        // The limit sees the size before the data is compared with it.
        let data = [serde_json::json!(1)];
        let e = tensor(0, Some("f32"), Some(&[1 << 20]), Some(&data), limit).unwrap_err();
        assert_eq!(e, "4194304 bytes over 4096");
        let e = tensor(0, Some("f32"), Some(&[0; 9]), None, limit).unwrap_err();
        assert!(e.contains("dimensions"), "{e}");
    }

    #[test]
    fn half_floats_round_to_nearest_even() {
        for x in [0.0f32, 1.0, -2.5, 65504.0, 6.1e-5, 5.96e-8, 0.1] {
            let back = f16_to_f32(f32_to_f16(x));
            assert!((back - x).abs() <= x.abs() * 1e-3 + 6e-8, "{x} -> {back}");
        }
        assert_eq!(f32_to_f16(1e6), 0x7c00);
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        assert_eq!(f32::from_bits((f32_to_bf16(1.3) as u32) << 16), 1.296875);
    }
}
