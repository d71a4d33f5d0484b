//! The record model: [`Record`] (what is stored and returned), [`NewRecord`] (a parsed create
//! request), [`Patch`] (a parsed JSON Merge Patch, RFC 7396) and [`IfMatch`] (an `If-Match`
//! precondition on the record's entity-tag).
//!
//! Request bodies are parsed here, from raw bytes, with the API's rules, so every front-end shares
//! them. Nothing here touches storage.

use std::fmt;
use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::json::parse_strict;
use crate::{Error, Expiry, Guid, Result};

/// The metadata of a record: every top-level key but `guid` and `expire`, in the order given.
pub type Metadata = Map<String, Value>;

/// A stored record: its GUID, expiry, metadata and version.
///
/// The JSON form (`{"guid":…,"expire":"…",…metadata}`) and the entity-tag are rendered once when
/// the record is built, into one shared buffer: serving a cached record formats nothing and copies
/// nothing ([`Record::json_bytes`] and [`Record::etag_bytes`] share it).
///
/// The record keeps only that rendering: its metadata is parsed from it when first asked for
/// ([`Record::metadata`]) and kept from then on. A cached record thus costs its JSON text and a
/// few words, not a map of allocated keys and values (measured: about 1.4 KiB per cached record
/// of three members with the map, see BENCHMARKS.md "Large registries").
#[derive(Clone)]
pub struct Record {
    guid: Guid,
    expire: Expiry,
    /// Boxed: a record that never needs its map (most cached ones) spends one word on it.
    metadata: OnceLock<Box<Metadata>>,
    version: u64,
    /// The entity-tag (`ETAG_LEN` bytes), then the JSON form.
    rendered: Bytes,
    /// Where the metadata members start in the JSON form (after `"expire":"…"` and a comma).
    metadata_offset: usize,
}

/// The length of a quoted entity-tag: 16 hexadecimal digits and two quotes.
const ETAG_LEN: usize = 18;

/// Appends `value` as 16 lowercase hexadecimal digits (`{value:016x}`).
fn push_hex16(out: &mut String, value: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(char::from(DIGITS[((value >> (shift * 4)) & 0xf) as usize]));
    }
}

/// Appends `value` in decimal (`{value}`).
fn push_decimal(out: &mut String, value: u64) {
    let mut digits = [0_u8; 20];
    let mut at = digits.len();
    let mut rest = value;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend(digits[at..].iter().map(|&digit| char::from(digit)));
}

impl Record {
    pub(crate) fn new(guid: Guid, expire: Expiry, metadata: Metadata, version: u64) -> Record {
        let metadata_json = serde_json::to_string(&metadata).unwrap_or_else(|_| "{}".to_owned());
        Record::from_metadata_json(guid, expire, &metadata_json, version)
    }

    /// Builds the record from its metadata's JSON text: a JSON object as `serde_json` writes it
    /// (compact), which the caller has checked (it was written by [`Record::new`], or validated).
    pub(crate) fn from_metadata_json(guid: Guid, expire: Expiry, metadata_json: &str, version: u64) -> Record {
        let members = metadata_json.strip_prefix('{').unwrap_or("}");
        // Empty when only the brace is left (a stored `{ }` too: no comma before it).
        let separator = if members.trim_start() == "}" { "" } else { "," };
        // Built by hand, not with `format!`: every record read from storage or Redis passes here,
        // and the formatting machinery cost about 2,800 instructions a record (callgrind).
        let mut rendered = String::with_capacity(ETAG_LEN + 52 + 20 + 14 + separator.len() + members.len());
        rendered.push('"');
        push_hex16(&mut rendered, version);
        rendered.push_str(r#""{"guid":""#);
        rendered.push_str(guid.as_str());
        rendered.push_str(r#"","expire":""#);
        push_decimal(&mut rendered, expire.as_secs());
        rendered.push('"');
        rendered.push_str(separator);
        rendered.push_str(members);
        let metadata_offset = rendered.len() - ETAG_LEN - members.len();
        Record { guid, expire, metadata: OnceLock::new(), version, rendered: Bytes::from(rendered), metadata_offset }
    }

    /// The metadata as a JSON object text, as stored.
    pub(crate) fn metadata_json(&self) -> String {
        format!("{{{}", self.metadata_members())
    }

    /// The metadata's members and the closing brace: the tail of the JSON form.
    fn metadata_members(&self) -> &str {
        self.to_json().get(self.metadata_offset..).unwrap_or("}")
    }

    /// Whether `other` has the same expiry and metadata (compared as maps, whatever the order of
    /// the keys); the text is compared first, so equal records parse nothing.
    pub(crate) fn same_content(&self, other: &Record) -> bool {
        self.expire == other.expire
            && (self.metadata_members() == other.metadata_members() || self.metadata() == other.metadata())
    }

    /// This record's GUID, expiry and metadata under another version (nothing is parsed).
    pub(crate) fn with_version(&self, version: u64) -> Record {
        Record::from_metadata_json(self.guid, self.expire, &self.metadata_json(), version)
    }

    /// The record's GUID.
    pub fn guid(&self) -> &Guid {
        &self.guid
    }

    /// When the record expires.
    pub fn expire(&self) -> Expiry {
        self.expire
    }

    /// The metadata (every key but `guid` and `expire`).
    ///
    /// Parsed from the record's JSON form on the first call (a record read from the cache has
    /// never needed it), then kept.
    pub fn metadata(&self) -> &Metadata {
        // The JSON form was rendered from a serialized `Metadata`: it parses back to the same map.
        self.metadata.get_or_init(|| Box::new(serde_json::from_str(&self.metadata_json()).unwrap_or_default()))
    }

    /// The version: a random number drawn at every change of the record.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The strong entity-tag naming this version, quoted as in an `ETag` header: `"0123456789abcdef"`.
    pub fn etag(&self) -> String {
        self.etag_str().to_owned()
    }

    /// [`Record::etag`] without a copy: the bytes of the record's shared rendering.
    pub fn etag_bytes(&self) -> Bytes {
        self.rendered.slice(..ETAG_LEN)
    }

    fn etag_str(&self) -> &str {
        // The rendering was built from a `String`: always UTF-8.
        self.rendered.get(..ETAG_LEN).and_then(|tag| std::str::from_utf8(tag).ok()).unwrap_or_default()
    }

    /// The record as one line of JSON: `guid`, `expire` (a string), then the metadata keys.
    pub fn to_json(&self) -> &str {
        // The rendering was built from a `String`: always UTF-8.
        self.rendered.get(ETAG_LEN..).and_then(|json| std::str::from_utf8(json).ok()).unwrap_or_default()
    }

    /// [`Record::to_json`] without a copy: the bytes of the record's shared rendering, for a
    /// response body.
    pub fn json_bytes(&self) -> Bytes {
        self.rendered.slice(ETAG_LEN..)
    }

    /// Whether the record is expired at `now`.
    pub fn is_expired_at(&self, now: u64) -> bool {
        self.expire.is_expired_at(now)
    }
}

/// Records are equal when their GUID, expiry, version and metadata are (metadata compared as
/// maps, whatever the order of their keys).
impl PartialEq for Record {
    fn eq(&self, other: &Record) -> bool {
        self.guid == other.guid && self.version == other.version && self.same_content(other)
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("version", &format_args!("{:016x}", self.version))
            .field("json", &self.to_json())
            .finish()
    }
}

fn check_metadata(metadata: &Metadata) -> Result<()> {
    match metadata.get("user") {
        None => Ok(()),
        Some(Value::String(user)) if !user.is_empty() => Ok(()),
        Some(_) => Err(Error::InvalidMetadata("user must be a non-empty string".to_owned())),
    }
}

/// Parses JSON with the API's strict rules: invalid UTF-8, a duplicate key in any object, or
/// nesting deeper than 128 levels is [`Error::InvalidJson`].
pub fn parse_json(bytes: &[u8]) -> Result<Value> {
    parse_strict(bytes).map_err(Error::InvalidJson)
}

/// Parses a JSON object with the rules of [`parse_json`]; any other JSON value is
/// [`Error::InvalidJson`]. Front-ends use it to merge their own fields into a body before
/// [`NewRecord::parse`] or [`Patch::parse`] check it.
pub fn parse_json_object(body: &[u8]) -> Result<Map<String, Value>> {
    parse_object(body)
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>> {
    match parse_json(body)? {
        Value::Object(object) => Ok(object),
        other => Err(Error::InvalidJson(format!("expected an object, found {}", kind(&other)))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A validated create request: an optional GUID, an optional expiry and the metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecord {
    guid: Option<Guid>,
    expire: Option<Expiry>,
    metadata: Metadata,
}

impl NewRecord {
    /// A create request from parts already validated; checks the metadata rules.
    pub fn new(guid: Option<Guid>, expire: Option<Expiry>, metadata: Metadata) -> Result<NewRecord> {
        if metadata.contains_key("guid") || metadata.contains_key("expire") {
            return Err(Error::InvalidMetadata("metadata cannot use the keys guid or expire".to_owned()));
        }
        check_metadata(&metadata)?;
        Ok(NewRecord { guid, expire, metadata })
    }

    /// Parses a create body. `path_guid` is the GUID named by the request (`POST /guid/{guid}`);
    /// a body `guid` must then equal it. An empty body is `{}`. `now` checks `expire`.
    pub fn parse(body: &[u8], path_guid: Option<&Guid>, now: u64) -> Result<NewRecord> {
        let mut object = if body.is_empty() { Map::new() } else { parse_object(body)? };
        let body_guid = match object.shift_remove("guid") {
            None => None,
            Some(value) => {
                let parsed = match &value {
                    Value::String(text) => Guid::parse(text),
                    _ => Err(crate::GuidError::NotAString),
                };
                match (path_guid, parsed) {
                    (Some(path), Ok(guid)) if *path != guid => {
                        return Err(Error::GuidMismatch { path: *path, body: guid.to_string() });
                    }
                    (Some(path), Err(crate::GuidError::NotAString)) => {
                        return Err(Error::GuidMismatch { path: *path, body: value.to_string() });
                    }
                    (_, parsed) => Some(parsed?),
                }
            }
        };
        let expire = object.shift_remove("expire").map(|v| Expiry::from_json(&v, now)).transpose()?;
        check_metadata(&object)?;
        Ok(NewRecord { guid: path_guid.copied().or(body_guid), expire, metadata: object })
    }

    /// The GUID asked for, if any (otherwise the store draws a random one).
    pub fn guid(&self) -> Option<&Guid> {
        self.guid.as_ref()
    }

    /// The expiry asked for, if any (otherwise now + the store's default TTL).
    pub fn expire(&self) -> Option<Expiry> {
        self.expire
    }

    /// The metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The metadata, taken out of the request.
    pub(crate) fn into_metadata(self) -> Metadata {
        self.metadata
    }

    /// Sets the GUID (for a front-end that takes it from elsewhere, such as a CLI argument).
    pub fn with_guid(mut self, guid: Guid) -> NewRecord {
        self.guid = Some(guid);
        self
    }
}

/// A validated update: JSON Merge Patch (RFC 7396) on the metadata, plus an optional new expiry.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Patch {
    expire: Option<Expiry>,
    changes: Map<String, Value>,
}

impl Patch {
    /// A patch from parts: `changes` is a merge-patch object on the metadata (`null` removes a key).
    pub fn new(expire: Option<Expiry>, changes: Map<String, Value>) -> Result<Patch> {
        if changes.contains_key("guid") || changes.contains_key("expire") {
            return Err(Error::InvalidMetadata("metadata cannot use the keys guid or expire".to_owned()));
        }
        Ok(Patch { expire, changes })
    }

    /// Parses a merge-patch body for the record `guid`. A body `guid` must equal it
    /// (`guid_immutable` otherwise); `expire` follows the create rules and may not be `null`.
    pub fn parse(body: &[u8], guid: &Guid, now: u64) -> Result<Patch> {
        let mut object = parse_object(body)?;
        match object.shift_remove("guid") {
            None => {}
            Some(Value::String(text)) if text == guid.as_str() => {}
            Some(_) => return Err(Error::GuidImmutable(*guid)),
        }
        let expire = object.shift_remove("expire").map(|v| Expiry::from_json(&v, now)).transpose()?;
        Ok(Patch { expire, changes: object })
    }

    /// Whether applying the patch can change nothing (`{}`).
    pub fn is_empty(&self) -> bool {
        self.expire.is_none() && self.changes.is_empty()
    }

    /// The new expiry, if the patch sets one.
    pub fn expire(&self) -> Option<Expiry> {
        self.expire
    }

    /// The merge-patch object applied to the metadata.
    pub fn changes(&self) -> &Map<String, Value> {
        &self.changes
    }

    /// Applies the patch to `(expire, metadata)`, checking the metadata rules on the result.
    pub fn apply(&self, expire: Expiry, metadata: &Metadata) -> Result<(Expiry, Metadata)> {
        let mut merged = metadata.clone();
        merge_object(&mut merged, &self.changes);
        check_metadata(&merged)?;
        Ok((self.expire.unwrap_or(expire), merged))
    }
}

/// RFC 7396 `MergePatch(Target, Patch)` where both are objects.
fn merge_object(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        if value.is_null() {
            target.shift_remove(key);
        } else {
            let slot = target.entry(key.clone()).or_insert(Value::Null);
            merge_value(slot, value);
        }
    }
}

/// RFC 7396 `MergePatch(Target, Patch)` for any values.
pub fn merge_value(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(patch_object) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(target_object) = target {
                merge_object(target_object, patch_object);
            }
        }
        other => *target = other.clone(),
    }
}

/// An `If-Match` precondition (RFC 9110 §13.1.1), compared strongly against [`Record::etag`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: any live record matches.
    Any,
    /// A list of entity-tags, as given (quoted; weak tags are kept and never match).
    Tags(Vec<String>),
}

impl IfMatch {
    /// Parses a header value: `*`, or a comma-separated list of entity-tags such as
    /// `"abc", W/"def"` (RFC 9110 §5.6.1 list syntax: empty elements and whitespace around commas
    /// are allowed). A value that is not valid syntax as a whole — two tags without a comma
    /// (`"a""b"`), text after a tag, an unquoted tag, `*` beside tags — yields an empty list,
    /// which matches nothing, even where the record's tag appears in it.
    pub fn parse(header: &str) -> IfMatch {
        let header = header.trim_matches([' ', '\t']);
        if header == "*" {
            return IfMatch::Any;
        }
        IfMatch::Tags(parse_entity_tags(header).unwrap_or_default())
    }

    /// Whether `record` satisfies the precondition (strong comparison).
    pub fn matches(&self, record: &Record) -> bool {
        match self {
            IfMatch::Any => true,
            IfMatch::Tags(tags) => {
                let etag = record.etag_str();
                tags.iter().any(|tag| tag == etag)
            }
        }
    }
}

/// `#entity-tag` (RFC 9110 §8.8.3, §5.6.1): the tags as given, or `None` if the list is not valid.
fn parse_entity_tags(list: &str) -> Option<Vec<String>> {
    let mut tags = Vec::new();
    let mut rest = list;
    loop {
        // Empty list elements (`,,`) and whitespace around them are allowed.
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return Some(tags);
        }
        let (weak, after) = match rest.strip_prefix("W/") {
            Some(after) => (true, after),
            None => (false, rest),
        };
        let quoted = after.strip_prefix('"')?;
        let end = quoted.find('"')?;
        let (opaque, remainder) = quoted.split_at(end);
        // etagc = %x21 / %x23-7E / obs-text (non-ASCII here).
        if !opaque.chars().all(|c| c == '!' || ('#'..='~').contains(&c) || !c.is_ascii()) {
            return None;
        }
        tags.push(format!("{}\"{opaque}\"", if weak { "W/" } else { "" }));
        rest = remainder.get(1..)?.trim_start_matches([' ', '\t']);
        // After a tag: the end of the list or a comma, nothing else.
        if !rest.is_empty() && !rest.starts_with(',') {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;
    const G: &str = "9094E4C980C74043A4B586B420E69DDF";

    fn guid() -> Guid {
        Guid::parse(G).unwrap()
    }

    fn code(result: Result<impl fmt::Debug>) -> &'static str {
        result.map(|_| "ok").unwrap_or_else(|e| e.code().as_str())
    }

    proptest! {
        /// The hand-built rendering is exactly what `format!` made of it.
        #[test]
        fn a_stored_record_renders_as_format_did(version: u64, seconds in 0_i64..=i64::MAX, members in 0_usize..3) {
            let Some(expire) = Expiry::from_stored(seconds) else { return Ok(()) };
            let metadata = ["{}", "{ \n}", r#"{"user":"Jay","n":[1,2.5,{"x":null}]}"#][members];
            let record = Record::from_metadata_json(guid(), expire, metadata, version);
            let tail = metadata.strip_prefix('{').unwrap();
            let separator = if tail.trim_start() == "}" { "" } else { "," };
            let expected = format!(r#""{version:016x}"{{"guid":"{G}","expire":"{expire}"{separator}{tail}"#);
            prop_assert_eq!(record.etag_bytes(), Bytes::copy_from_slice(&expected.as_bytes()[..ETAG_LEN]));
            prop_assert_eq!(record.to_json(), &expected[ETAG_LEN..]);
            prop_assert_eq!(record.metadata_json(), format!("{{{tail}"));
        }
    }

    #[test]
    fn hand_built_numbers_match_their_format() {
        for value in [0, 1, 9, 10, 0xabc, 1_700_000_000, u64::MAX] {
            let (mut hex, mut decimal) = (String::new(), String::new());
            push_hex16(&mut hex, value);
            push_decimal(&mut decimal, value);
            assert_eq!(hex, format!("{value:016x}"));
            assert_eq!(decimal, value.to_string());
        }
    }

    #[test]
    fn metadata_json_is_the_tail_of_the_record_json() {
        let empty = Record::new(guid(), Expiry::new_after(NOW + 1, NOW).unwrap(), Metadata::new(), 1);
        assert_eq!(empty.metadata_json(), "{}");
        assert_eq!(empty.to_json(), format!(r#"{{"guid":"{G}","expire":"{}"}}"#, NOW + 1));
        let mut metadata = Metadata::new();
        metadata.insert("a".into(), json!({"b": [1, "}"]}));
        let record = Record::new(guid(), Expiry::new_after(NOW + 1, NOW).unwrap(), metadata.clone(), 1);
        assert_eq!(record.metadata_json(), r#"{"a":{"b":[1,"}"]}}"#);
        let parsed: Value = serde_json::from_str(record.to_json()).unwrap();
        assert_eq!(parsed["a"], metadata["a"]);
    }

    #[test]
    fn a_record_parses_its_metadata_only_when_asked_and_keeps_it() {
        let expire = Expiry::new_after(NOW + 1, NOW).unwrap();
        let mut metadata = Metadata::new();
        metadata.insert("user".into(), json!("Jay"));
        metadata.insert("tags".into(), json!(["a", {"b": 1.5}]));
        let built = Record::new(guid(), expire, metadata.clone(), 7);
        assert!(built.metadata.get().is_none(), "the map is not kept after rendering");
        let stored = Record::from_metadata_json(guid(), expire, &built.metadata_json(), 7);
        assert_eq!(stored.to_json(), built.to_json());
        assert_eq!(stored.metadata(), &metadata);
        assert!(stored.metadata.get().is_some(), "kept once parsed");
        assert_eq!(stored, built);
        let reordered = Record::from_metadata_json(guid(), expire, r#"{"tags":["a",{"b":1.5}],"user":"Jay"}"#, 7);
        assert_eq!(reordered, built, "equal as maps, whatever the order of the keys");
        assert_ne!(Record::from_metadata_json(guid(), expire, "{}", 7), built);
        assert!(
            reordered.same_content(&built) && !built.same_content(&Record::new(guid(), expire, Metadata::new(), 7))
        );
        let moved = built.with_version(8);
        assert!(moved.same_content(&built) && moved.version() == 8 && moved.metadata.get().is_none());
        assert!(Record::from_metadata_json(guid(), expire, "{}", 7).metadata().is_empty());
        let spaced = Record::from_metadata_json(guid(), expire, "{ \n}", 7);
        serde_json::from_str::<Value>(spaced.to_json()).expect("valid JSON");
        assert!(spaced.metadata().is_empty());
    }

    #[test]
    fn record_json_puts_guid_and_expire_first() {
        let mut metadata = Metadata::new();
        metadata.insert("zeta".into(), json!(1));
        metadata.insert("user".into(), json!("Jay Patel"));
        let record = Record::new(guid(), Expiry::new_after(1_427_736_345, 0).unwrap(), metadata, 0xab);
        assert_eq!(
            record.to_json(),
            r#"{"guid":"9094E4C980C74043A4B586B420E69DDF","expire":"1427736345","zeta":1,"user":"Jay Patel"}"#
        );
        assert_eq!(record.etag(), "\"00000000000000ab\"");
        assert_eq!(record.json_bytes(), record.to_json().as_bytes());
        assert_eq!(record.etag_bytes(), record.etag().as_bytes());
        assert_eq!(record.metadata_json(), r#"{"zeta":1,"user":"Jay Patel"}"#);
        let empty = Record::new(guid(), Expiry::new_after(1, 0).unwrap(), Metadata::new(), u64::MAX);
        assert_eq!(empty.to_json(), r#"{"guid":"9094E4C980C74043A4B586B420E69DDF","expire":"1"}"#);
        assert_eq!((empty.etag(), empty.metadata_json()), ("\"ffffffffffffffff\"".to_owned(), "{}".to_owned()));
    }

    #[test]
    fn create_bodies_follow_the_api_rules() {
        let path = guid();
        let other = "00000000000000000000000000000000";
        let cases: Vec<(&[u8], Option<&Guid>, &str)> = vec![
            (b"", None, "ok"),
            (b"{}", None, "ok"),
            (br#"{"user":"Jay","expire":1800000000}"#, None, "ok"),
            (br#"{"expire":"1800000000","tags":[1,2]}"#, Some(&path), "ok"),
            (format!(r#"{{"guid":"{G}"}}"#).as_bytes().to_vec().leak(), Some(&path), "ok"),
            (format!(r#"{{"guid":"{other}"}}"#).as_bytes().to_vec().leak(), Some(&path), "guid_mismatch"),
            (br#"{"guid":"abc"}"#, None, "invalid_guid"),
            (br#"{"guid":"abc"}"#, Some(&path), "invalid_guid"),
            (br#"{"guid":5}"#, None, "invalid_guid"),
            (br#"{"guid":5}"#, Some(&path), "guid_mismatch"),
            (b"[]", None, "invalid_json"),
            (b"null", None, "invalid_json"),
            (b"\"x\"", None, "invalid_json"),
            (b"{", None, "invalid_json"),
            (b" ", None, "invalid_json"),
            (b"{\"a\":\"\xff\"}", None, "invalid_json"),
            (br#"{"a":1,"a":1}"#, None, "invalid_json"),
            (br#"{"expire":1}"#, None, "invalid_expire"),
            (br#"{"expire":null}"#, None, "invalid_expire"),
            (br#"{"expire":1e10}"#, None, "invalid_expire"),
            (br#"{"user":""}"#, None, "invalid_metadata"),
            (br#"{"user":7}"#, None, "invalid_metadata"),
            (br#"{"user":null}"#, None, "invalid_metadata"),
        ];
        for (body, path_guid, expected) in cases {
            let got = code(NewRecord::parse(body, path_guid, NOW));
            assert_eq!(got, expected, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn create_takes_the_path_guid_and_keeps_metadata_order() {
        let parsed = NewRecord::parse(br#"{"b":1,"expire":"1800000000","a":2}"#, Some(&guid()), NOW).unwrap();
        assert_eq!(parsed.guid(), Some(&guid()));
        assert_eq!(parsed.expire().map(Expiry::as_secs), Some(1_800_000_000));
        assert_eq!(parsed.metadata().keys().collect::<Vec<_>>(), ["b", "a"]);
    }

    #[test]
    fn patch_bodies_follow_the_api_rules() {
        let cases: Vec<(&[u8], &str)> = vec![
            (b"{}", "ok"),
            (format!(r#"{{"guid":"{G}"}}"#).as_bytes().to_vec().leak(), "ok"),
            (br#"{"guid":"00000000000000000000000000000000"}"#, "guid_immutable"),
            (br#"{"guid":null}"#, "guid_immutable"),
            (br#"{"expire":null}"#, "invalid_expire"),
            (br#"{"expire":"1800000000"}"#, "ok"),
            (b"", "invalid_json"),
            (b"[1]", "invalid_json"),
        ];
        for (body, expected) in cases {
            assert_eq!(code(Patch::parse(body, &guid(), NOW)), expected, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn patch_applies_merge_patch_and_checks_user() {
        let mut metadata = Metadata::new();
        metadata.insert("user".into(), json!("Jay"));
        metadata.insert("team".into(), json!({"name": "ops", "size": 3}));
        let expire = Expiry::new_after(1_800_000_000, NOW).unwrap();
        let patch = Patch::parse(br#"{"team":{"size":null,"lead":"Ann"},"user":null,"x":[1]}"#, &guid(), NOW).unwrap();
        let (new_expire, merged) = patch.apply(expire, &metadata).unwrap();
        assert_eq!(new_expire, expire);
        assert_eq!(Value::Object(merged), json!({"team": {"name": "ops", "lead": "Ann"}, "x": [1]}));
        let bad = Patch::parse(br#"{"user":""}"#, &guid(), NOW).unwrap();
        assert_eq!(code(bad.apply(expire, &metadata)), "invalid_metadata");
    }

    #[test]
    fn merge_value_matches_rfc_7396_examples() {
        // The test cases of RFC 7396, Appendix A.
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (json!({"a":"b","b":"c"}), json!({"a":null}), json!({"b":"c"})),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (json!({"a":{"b":"c"}}), json!({"a":{"b":"d","c":null}}), json!({"a":{"b":"d"}})),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (json!({}), json!({"a":{"bb":{"ccc":null}}}), json!({"a":{"bb":{}}})),
        ];
        for (mut target, patch, expected) in cases {
            merge_value(&mut target, &patch);
            assert_eq!(target, expected, "patch {patch}");
        }
    }

    #[test]
    fn if_match_compares_strongly() {
        let record = Record::new(guid(), Expiry::new_after(NOW + 1, NOW).unwrap(), Metadata::new(), 1);
        let etag = record.etag();
        assert!(IfMatch::parse("*").matches(&record));
        assert!(IfMatch::parse(&etag).matches(&record));
        assert!(IfMatch::parse(&format!("\"x\", {etag}")).matches(&record));
        assert!(!IfMatch::parse(&format!("W/{etag}")).matches(&record));
        assert!(!IfMatch::parse("\"nope\"").matches(&record));
        assert!(!IfMatch::parse("").matches(&record));
        assert!(!IfMatch::parse("garbage").matches(&record));
        assert!(IfMatch::parse(&format!(" ,{etag} ,, \"x\" ,")).matches(&record));
    }

    #[test]
    fn if_match_that_is_not_list_syntax_matches_nothing_even_with_the_tag_inside() {
        let record = Record::new(guid(), Expiry::new_after(NOW + 1, NOW).unwrap(), Metadata::new(), 1);
        let etag = record.etag();
        for text in [
            format!("{etag}{etag}"),
            format!("{etag}\"x\""),
            format!("{etag} garbage"),
            format!("{etag} \"x\""),
            format!("{etag}, garbage"),
            format!("garbage, {etag}"),
            format!("*, {etag}"),
            format!("{etag}, *"),
            format!("{etag}, \"unterminated"),
            format!("{etag};"),
            "\"with space\"".to_owned(),
        ] {
            assert_eq!(IfMatch::parse(&text), IfMatch::Tags(Vec::new()), "{text}");
            assert!(!IfMatch::parse(&text).matches(&record), "{text}");
        }
        assert_eq!(
            IfMatch::parse(r#""a", W/"b",,"c""#),
            IfMatch::Tags(vec!["\"a\"".into(), "W/\"b\"".into(), "\"c\"".into()])
        );
    }

    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            "[a-c]{0,2}".prop_map(Value::from)
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        json_leaf().prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                proptest::collection::btree_map("[a-c]", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn merge_patch_is_idempotent(target in json_value(), patch in json_value()) {
            let mut once = target.clone();
            merge_value(&mut once, &patch);
            let mut twice = once.clone();
            merge_value(&mut twice, &patch);
            prop_assert_eq!(once, twice);
        }

        #[test]
        fn merge_patch_result_has_no_nulls_from_object_patches(target in json_value(), patch in proptest::collection::btree_map("[a-c]", json_value(), 0..3)) {
            let patch = Value::Object(patch.into_iter().collect());
            let mut result = target;
            merge_value(&mut result, &patch);
            for (key, value) in patch.as_object().unwrap() {
                if value.is_null() {
                    prop_assert!(result.get(key).is_none());
                }
            }
        }

        #[test]
        fn create_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = NewRecord::parse(&bytes, None, NOW);
            let _ = Patch::parse(&bytes, &guid(), NOW);
        }

        #[test]
        fn if_match_parse_never_panics(text in "\\PC{0,40}") {
            let _ = IfMatch::parse(&text);
        }
    }
}
