//! [`Guid`]: a 32-character uppercase hexadecimal identifier, constructible only valid.
//!
//! The format rule lives here and nowhere else. Generation uses `rand::random`, whose
//! `ThreadRng` is a ChaCha12 CSPRNG seeded from the operating system and reseeded periodically; all
//! 128 bits are random (no UUID version bits, no timestamp).

use std::fmt;
use std::str::FromStr;

/// Number of characters in a GUID.
pub const GUID_LEN: usize = 32;

/// A valid GUID: exactly 32 characters, each `0-9` or `A-F`.
///
/// There is no way to build a `Guid` from unchecked text: use [`Guid::parse`] (or
/// [`str::parse`]) or [`Guid::random`].
///
/// ```
/// use guidstore::Guid;
/// let guid = Guid::parse("9094E4C980C74043A4B586B420E69DDF").unwrap();
/// assert_eq!(guid.as_str(), "9094E4C980C74043A4B586B420E69DDF");
/// assert!(Guid::parse("9094e4c980c74043a4b586b420e69ddf").is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid([u8; GUID_LEN]);

/// Why a text is not a [`Guid`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuidError {
    /// The text does not have exactly 32 bytes.
    #[error("GUID must be 32 uppercase hexadecimal characters (got {0} bytes)")]
    Length(usize),
    /// A character outside `0-9A-F` at the given byte offset.
    #[error("GUID must be 32 uppercase hexadecimal characters (invalid character at position {0})")]
    Character(usize),
    /// A JSON `guid` value that is not a string.
    #[error("GUID must be a string of 32 uppercase hexadecimal characters")]
    NotAString,
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

impl Guid {
    /// Parses `text` as a GUID: exactly 32 bytes, each an ASCII digit or `A`–`F`.
    pub fn parse(text: &str) -> Result<Guid, GuidError> {
        Self::parse_bytes(text.as_bytes())
    }

    /// Parses raw bytes (for example an undecoded URL path segment) as a GUID.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Guid, GuidError> {
        let array: &[u8; GUID_LEN] = bytes.try_into().map_err(|_| GuidError::Length(bytes.len()))?;
        // Eight bytes at a time, without branches (every request path parses a GUID); the
        // position of the first bad byte is looked for only once the text is known to be invalid.
        let (words, _) = array.as_chunks::<8>();
        if words.iter().fold(0, |bad, word| bad | not_upper_hex(u64::from_le_bytes(*word))) == 0 {
            return Ok(Guid(*array));
        }
        Err(GuidError::Character(first_invalid(array)))
    }

    /// A new GUID of 128 bits from a cryptographically secure generator, as 32 uppercase hex digits.
    pub fn random() -> Guid {
        let bits: u128 = rand::random();
        let mut out = [0u8; GUID_LEN];
        for (i, slot) in out.iter_mut().enumerate() {
            let nibble = (bits >> (4 * (GUID_LEN - 1 - i))) & 0xF;
            *slot = HEX_UPPER[nibble as usize];
        }
        Guid(out)
    }

    /// The GUID's 128 bits, most significant first: its 16-byte storage form. Byte order follows
    /// the text, so 16-byte keys sort as the GUIDs' texts do.
    pub(crate) fn to_bytes(self) -> [u8; GUID_LEN / 2] {
        let mut bytes = [0u8; GUID_LEN / 2];
        for (byte, pair) in bytes.iter_mut().zip(self.0.chunks_exact(2)) {
            if let [high, low] = pair {
                *byte = (hex_value(*high) << 4) | hex_value(*low);
            }
        }
        bytes
    }

    /// The GUID whose 128 bits are `bytes` (most significant first), the inverse of `to_bytes`.
    pub(crate) fn from_bytes(bytes: [u8; GUID_LEN / 2]) -> Guid {
        let mut out = [0u8; GUID_LEN];
        for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
            if let [high, low] = pair {
                *high = HEX_UPPER[usize::from(byte >> 4)];
                *low = HEX_UPPER[usize::from(byte & 0xF)];
            }
        }
        Guid(out)
    }

    /// The GUID as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored (see `parse_bytes` and `random`).
        std::str::from_utf8(&self.0).expect("a Guid holds ASCII hexadecimal digits")
    }
}

/// The offset of the first byte of `text` that is not `0`–`9` or `A`–`F` (out of line: only an
/// invalid GUID gets here).
#[cold]
#[inline(never)]
fn first_invalid(text: &[u8]) -> usize {
    text.iter().position(|&byte| !is_upper_hex(byte)).unwrap_or_default()
}

/// Whether `byte` is `0`–`9` or `A`–`F`.
const fn is_upper_hex(byte: u8) -> bool {
    matches!(byte, b'0'..=b'9' | b'A'..=b'F')
}

/// For eight bytes in a word: the high bit of each byte that is not `0`–`9` or `A`–`F` set, the
/// rest clear (zero: all eight are hexadecimal digits).
fn not_upper_hex(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // For a byte below 0x80, adding `0x80 - bound` sets its high bit exactly when it is at least
    // `bound`, and never carries into the next byte (0x7F + 0x50 < 0x100).
    let low = word & !HIGH;
    let at_least = |bound: u64| (low + ONES * (0x80 - bound)) & HIGH;
    let digit = at_least(b'0' as u64) & !at_least(b'9' as u64 + 1);
    let letter = at_least(b'A' as u64) & !at_least(b'F' as u64 + 1);
    (!(digit | letter) & HIGH) | (word & HIGH)
}

/// The value of one uppercase hexadecimal digit (a `Guid` holds nothing else).
fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        _ => digit - b'A' + 10,
    }
}

impl FromStr for Guid {
    type Err = GuidError;
    fn from_str(text: &str) -> Result<Guid, GuidError> {
        Guid::parse(text)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({})", self.as_str())
    }
}

impl AsRef<str> for Guid {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl serde::Serialize for Guid {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Guid {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Guid, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Guid::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl rusqlite::types::ToSql for Guid {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::Borrowed(rusqlite::types::ValueRef::Text(&self.0)))
    }
}

impl rusqlite::types::FromSql for Guid {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Guid> {
        let bytes = value.as_bytes()?;
        Guid::parse_bytes(bytes).map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sixteen_bytes_round_trip_and_sort_as_the_text() {
        let low = Guid::parse("0123456789ABCDEF0123456789ABCDEF").unwrap();
        assert_eq!(low.to_bytes()[..3], [0x01, 0x23, 0x45]);
        assert_eq!(Guid::from_bytes(low.to_bytes()), low);
        for _ in 0..100 {
            let (a, b) = (Guid::random(), Guid::random());
            assert_eq!(Guid::from_bytes(a.to_bytes()), a);
            assert_eq!(a.to_bytes().cmp(&b.to_bytes()), a.as_str().cmp(b.as_str()));
        }
    }

    #[test]
    fn parse_accepts_only_32_uppercase_hex() {
        let cases: &[(&str, bool)] = &[
            ("9094E4C980C74043A4B586B420E69DDF", true),
            ("00000000000000000000000000000000", true),
            ("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF", true),
            ("9094e4c980c74043a4b586b420e69ddf", false),
            ("9094E4C9-80C7-4043-A4B5-86B420E69DDF", false),
            ("{9094E4C980C74043A4B586B420E69DDF}", false),
            ("9094E4C980C74043A4B586B420E69DD", false),
            ("9094E4C980C74043A4B586B420E69DDF0", false),
            ("", false),
            ("9094E4C980C74043A4B586B420E69DDÉ", false),
            ("９094E4C980C74043A4B586B420E69DD", false),
            ("9094E4C980C74043A4B586B420E69DG0", false),
            (" 094E4C980C74043A4B586B420E69DDF", false),
        ];
        for (text, ok) in cases {
            assert_eq!(Guid::parse(text).is_ok(), *ok, "{text:?}");
        }
    }

    #[test]
    fn every_byte_value_at_every_position_is_judged_as_the_format_says() {
        let valid = *b"9094E4C980C74043A4B586B420E69DDF";
        for position in 0..GUID_LEN {
            for byte in 0..=u8::MAX {
                let mut text = valid;
                text[position] = byte;
                let expected = if byte.is_ascii_digit() || (b'A'..=b'F').contains(&byte) {
                    Ok(Guid(text))
                } else {
                    Err(GuidError::Character(position))
                };
                assert_eq!(Guid::parse_bytes(&text), expected, "byte {byte:#04x} at {position}");
            }
        }
    }

    #[test]
    fn random_guids_are_valid_and_distinct() {
        let a = Guid::random();
        let b = Guid::random();
        assert_ne!(a, b);
        assert_eq!(Guid::parse(a.as_str()), Ok(a));
    }

    #[test]
    fn serde_round_trips_as_a_string() {
        let guid = Guid::random();
        let json = serde_json::to_string(&guid).unwrap();
        assert_eq!(json, format!("\"{guid}\""));
        assert_eq!(serde_json::from_str::<Guid>(&json).unwrap(), guid);
        assert!(serde_json::from_str::<Guid>("\"abc\"").is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Guid::parse_bytes(&bytes);
        }

        #[test]
        fn parse_round_trips(text in "[0-9A-F]{32}") {
            let guid = Guid::parse(&text).unwrap();
            prop_assert_eq!(guid.as_str(), text.as_str());
            prop_assert_eq!(guid.to_string().parse::<Guid>().unwrap(), guid);
        }

        #[test]
        fn parse_agrees_with_the_byte_by_byte_rule(bytes in proptest::collection::vec(
            prop_oneof![4 => proptest::sample::select(b"0123456789ABCDEF".to_vec()), 1 => any::<u8>()],
            0..40,
        )) {
            let expected = if bytes.len() != GUID_LEN {
                Err(GuidError::Length(bytes.len()))
            } else {
                match bytes.iter().position(|b| !matches!(b, b'0'..=b'9' | b'A'..=b'F')) {
                    Some(position) => Err(GuidError::Character(position)),
                    None => Ok(std::str::from_utf8(&bytes).unwrap().to_owned()),
                }
            };
            prop_assert_eq!(Guid::parse_bytes(&bytes).map(|guid| guid.as_str().to_owned()), expected);
        }

        #[test]
        fn the_first_bad_byte_is_the_one_reported(
            text in "[0-9A-F]{32}",
            bad in proptest::collection::btree_map(0..GUID_LEN, any::<u8>().prop_filter("not a hex digit", |b| !b"0123456789ABCDEF".contains(b)), 1..4),
        ) {
            let mut bytes = text.into_bytes();
            for (position, byte) in &bad {
                bytes[*position] = *byte;
            }
            let first = *bad.keys().next().unwrap();
            prop_assert_eq!(Guid::parse_bytes(&bytes), Err(GuidError::Character(first)));
        }

        #[test]
        fn parse_rejects_other_lengths(text in "[0-9A-F]{0,31}|[0-9A-F]{33,40}") {
            prop_assert!(Guid::parse(&text).is_err());
        }
    }
}
