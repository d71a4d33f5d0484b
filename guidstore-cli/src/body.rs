//! Builds the JSON body of a create or update from the command line: `--json` (inline, `@FILE`
//! or `-` for stdin) first, then `--expire`, `--user`, each `--set KEY=JSON` and each `--unset KEY`
//! merged into it. The rules of the body itself (what a valid expire or user is) are not checked
//! here: the library (database mode) or the server (HTTP mode) checks them, so both agree.

use std::io::Read;

use serde_json::{Map, Value};

use crate::cli::Fields;
use crate::error::CliError;

/// Which request the body is for: it decides how an empty `--json` is read (`{}` for a create, an
/// error for an update, as over HTTP).
#[derive(Debug, Clone, Copy)]
pub enum BodyKind {
    /// A create.
    Create,
    /// An update.
    Update,
}

/// The body bytes for `fields` (and, for an update, `unset`). `stdin` is read only for `--json -`.
///
/// With `--json` alone the given bytes are passed on unchanged, so every rule of the API applies to
/// exactly what the user wrote; with other flags the object is parsed, merged and written again.
pub fn build(fields: &Fields, unset: &[String], kind: BodyKind, stdin: impl Read) -> Result<Vec<u8>, CliError> {
    let given = fields.json.as_deref().map(|source| read_source(source, stdin)).transpose()?;
    let no_flags = fields.expire.is_none() && fields.user.is_none() && fields.set.is_empty() && unset.is_empty();
    if no_flags {
        return Ok(given.unwrap_or_else(|| b"{}".to_vec()));
    }
    let mut object = match given {
        None => Map::new(),
        Some(bytes) if bytes.is_empty() && matches!(kind, BodyKind::Create) => Map::new(),
        Some(bytes) => parse_object(&bytes, kind)?,
    };
    if let Some(expire) = &fields.expire {
        object.insert("expire".to_owned(), Value::String(expire.clone()));
    }
    if let Some(user) = &fields.user {
        object.insert("user".to_owned(), Value::String(user.clone()));
    }
    for assignment in &fields.set {
        let (key, value) = parse_assignment(assignment)?;
        object.insert(key, value);
    }
    for key in unset {
        object.insert(key.clone(), Value::Null);
    }
    Ok(Value::Object(object).to_string().into_bytes())
}

/// Rejects a body over `limit` (`--max-body`, by default the server's [`guidstore::DEFAULT_MAX_BODY`])
/// with `payload_too_large`, as a server with the same limit does: database mode applies it too.
pub fn check_size(body: &[u8], limit: usize) -> Result<(), CliError> {
    if body.len() > limit {
        return Err(CliError::Api {
            code: guidstore::Code::PayloadTooLarge,
            message: format!("request body is {} bytes; the limit is {limit}", body.len()),
        });
    }
    Ok(())
}

/// `--json` text: `-` reads stdin, `@FILE` reads a file, anything else is the JSON itself.
fn read_source(source: &str, mut stdin: impl Read) -> Result<Vec<u8>, CliError> {
    if source == "-" {
        let mut bytes = Vec::new();
        stdin.read_to_end(&mut bytes).map_err(|e| CliError::io("cannot read the body from stdin", e))?;
        Ok(bytes)
    } else if let Some(path) = source.strip_prefix('@') {
        std::fs::read(path).map_err(|e| CliError::io(format!("cannot read --json file {path}"), e))
    } else {
        Ok(source.as_bytes().to_vec())
    }
}

/// Parses a `--json` object to merge flags into, with the library's strict rules first (duplicate
/// keys, depth, not an object) so merging never hides a body the API would refuse.
fn parse_object(bytes: &[u8], kind: BodyKind) -> Result<Map<String, Value>, CliError> {
    if bytes.is_empty() && matches!(kind, BodyKind::Create) {
        return Ok(Map::new());
    }
    Ok(guidstore::parse_json_object(bytes)?)
}

/// `KEY=JSON`: the value is parsed as JSON, or taken as a string when it is not JSON.
fn parse_assignment(assignment: &str) -> Result<(String, Value), CliError> {
    let Some((key, text)) = assignment.split_once('=') else {
        return Err(CliError::Usage(format!("--set expects KEY=JSON, got {assignment:?}")));
    };
    let value = match guidstore::parse_json(text.as_bytes()) {
        Ok(value) => value,
        // JSON the API would refuse (a duplicate key, too deep) is an error, not a string.
        Err(error) if serde_json::from_str::<Value>(text).is_ok() => return Err(error.into()),
        Err(_) => Value::String(text.to_owned()),
    };
    Ok((key.to_owned(), value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(json: Option<&str>, expire: Option<&str>, user: Option<&str>, set: &[&str]) -> Fields {
        Fields {
            json: json.map(str::to_owned),
            expire: expire.map(str::to_owned),
            user: user.map(str::to_owned),
            set: set.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn create(fields: &Fields) -> Result<Value, String> {
        let bytes = build(fields, &[], BodyKind::Create, std::io::empty()).map_err(|e| e.code().to_owned())?;
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    #[test]
    fn flags_merge_over_json_in_order() {
        let body = create(&fields(
            Some(r#"{"user":"old","team":"a","keep":1}"#),
            Some("1800000000"),
            Some("Jay Patel"),
            &["team=ops", r#"tags=["a","b"]"#, "size=3", "flag=true", "empty=", "eq=a=b", "café=ünï"],
        ));
        assert_eq!(
            body,
            Ok(json!({"user":"Jay Patel","team":"ops","keep":1,"expire":"1800000000","tags":["a","b"],
                "size":3,"flag":true,"empty":"","eq":"a=b","café":"ünï"}))
        );
    }

    #[test]
    fn set_falls_back_to_a_string_when_the_value_is_not_json() {
        let cases = [
            ("k=ops", json!("ops")),
            ("k=\"quoted\"", json!("quoted")),
            ("k=12", json!(12)),
            // Numbers keep their text (serde_json's arbitrary_precision); only the exponent is signed.
            ("k=1e3", serde_json::from_str::<Value>("1e+3").unwrap()),
            (
                "k=123456789012345678901234567890",
                serde_json::from_str::<Value>("123456789012345678901234567890").unwrap(),
            ),
            ("k={\"a\":1}", json!({"a":1})),
            ("k={not json", json!("{not json")),
            ("k=null", json!(null)),
            ("k= ", json!(" ")),
        ];
        for (assignment, expected) in cases {
            assert_eq!(create(&fields(None, None, None, &[assignment])), Ok(json!({"k": expected})), "{assignment}");
        }
    }

    #[test]
    fn set_refuses_json_the_api_would_refuse() {
        assert_eq!(create(&fields(None, None, None, &[r#"k={"a":1,"a":2}"#])), Err("invalid_json".to_owned()));
        assert_eq!(create(&fields(None, None, None, &["k={not json"])), Ok(json!({"k": "{not json"})));
    }

    #[test]
    fn set_without_equals_is_a_usage_error() {
        assert_eq!(create(&fields(None, None, None, &["team"])), Err("usage".to_owned()));
    }

    #[test]
    fn json_alone_is_passed_through_unchanged() {
        let text = r#"{"b":1,  "a":"x","a":"dup"}"#;
        let bytes = build(&fields(Some(text), None, None, &[]), &[], BodyKind::Create, std::io::empty());
        assert_eq!(bytes.ok(), Some(text.as_bytes().to_vec()));
    }

    #[test]
    fn invalid_json_is_refused_before_merging() {
        for text in ["[1]", "{", r#"{"a":1,"a":2}"#, "null", "\"x\""] {
            assert_eq!(create(&fields(Some(text), None, Some("u"), &[])), Err("invalid_json".to_owned()), "{text}");
        }
    }

    #[test]
    fn empty_json_is_an_empty_object_on_create_only() {
        assert_eq!(create(&fields(Some(""), None, Some("u"), &[])), Ok(json!({"user":"u"})));
        let update = build(&fields(Some(""), None, Some("u"), &[]), &[], BodyKind::Update, std::io::empty());
        assert_eq!(update.map_err(|e| e.code().to_owned()).err(), Some("invalid_json".to_owned()));
    }

    #[test]
    fn unset_is_a_merge_patch_null_after_set() {
        let bytes =
            build(&fields(None, None, None, &["a=1"]), &["a".into(), "b".into()], BodyKind::Update, std::io::empty());
        assert_eq!(serde_json::from_slice::<Value>(&bytes.unwrap()).unwrap(), json!({"a":null,"b":null}));
    }

    #[test]
    fn nothing_given_is_an_empty_object() {
        assert_eq!(create(&fields(None, None, None, &[])), Ok(json!({})));
    }

    #[test]
    fn json_is_read_from_stdin_and_files() {
        let stdin = build(&fields(Some("-"), None, None, &[]), &[], BodyKind::Create, &b"{\"a\":1}"[..]);
        assert_eq!(stdin.ok(), Some(b"{\"a\":1}".to_vec()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("body.json");
        std::fs::write(&path, "{\"f\":2}").unwrap();
        let source = format!("@{}", path.display());
        let file = build(&fields(Some(&source), None, Some("u"), &[]), &[], BodyKind::Create, std::io::empty());
        assert_eq!(serde_json::from_slice::<Value>(&file.unwrap()).unwrap(), json!({"f":2,"user":"u"}));
        let missing =
            build(&fields(Some("@/nonexistent/x.json"), None, None, &[]), &[], BodyKind::Create, std::io::empty());
        assert_eq!(missing.map_err(|e| e.code().to_owned()).err(), Some("io".to_owned()));
    }

    #[test]
    fn size_limit_matches_the_api() {
        let limit = guidstore::DEFAULT_MAX_BODY;
        assert_eq!(limit, 65_536);
        assert!(check_size(&vec![b' '; 65_536], limit).is_ok());
        let error = check_size(&vec![b' '; 65_537], limit).unwrap_err();
        assert_eq!(error.code(), "payload_too_large");
        assert!(check_size(&[b' '; 100], 99).is_err());
    }
}
