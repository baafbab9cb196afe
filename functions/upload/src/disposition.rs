//! The `Content-Disposition` header of one form part (RFC 7578), parsed strictly with the
//! grammar of RFC 6266: `form-data *( ";" param "=" ( token / quoted-string ) )`.
//!
//! - `filename` is a token or a quoted-string whose quoted-pairs `\"` and `\\` are unescaped
//!   (curl `--form-escape`); browsers (WHATWG HTML) instead percent-encode `"`, CR and LF as
//!   `%22`, `%0D`, `%0A`, and those three (and only those: a literal `%` stays) are decoded.
//!   A backslash before any other character is refused rather than guessed at: a browser sends
//!   `a\b` for the name `a\b`, which RFC 2616 would read as `ab`.
//! - `filename*` (RFC 8187) is `charset'language'percent-encoded`, charset UTF-8 or ISO-8859-1
//!   (case-insensitive); it wins over `filename` when both are sent.
//!
//! Anything the grammar does not allow (an unterminated quote, text after a value, a parameter
//! sent twice, a bad `%` escape, another charset) is an error naming the problem: a name is
//! never guessed at, cut or shortened.

use lambda_http::http;

/// What a part's header says: its field name and the raw (not yet checked) file name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Disposition {
    pub name: Option<String>,
    pub filename: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DispositionError {
    #[error("the part has more than one Content-Disposition header")]
    DuplicateHeader,
    #[error("the disposition type is {0:?}, not form-data")]
    NotFormData(String),
    #[error("expected a parameter name at {0:?}")]
    ExpectedParameter(String),
    #[error("parameter `{0}` has no `=value`")]
    MissingValue(String),
    #[error("parameter `{0}` is sent twice")]
    Duplicate(String),
    #[error("parameter `{0}` has an unterminated quoted string")]
    UnterminatedQuote(String),
    #[error("unexpected {found:?} after the value of parameter `{param}`")]
    Garbage { param: String, found: String },
    #[error("the unquoted value of `{param}` contains {found:?}; quote it")]
    BadToken { param: String, found: char },
    #[error("`{param}` has a backslash before {found:?}: a quoted-pair may only escape '\"' or '\\' (and a file name cannot contain '\\')")]
    Backslash { param: String, found: char },
    #[error("`{0}` contains a control character")]
    ControlCharacter(String),
    #[error("`{0}` has a malformed percent-encoding (a '%' must be followed by two hex digits)")]
    BadPercent(String),
    #[error("`{0}` is not valid UTF-8")]
    NotUtf8(String),
    #[error("`filename*` must be charset'language'value (RFC 8187), unquoted, with non-ASCII bytes percent-encoded")]
    BadExtValue,
    #[error("charset {0:?} of `filename*` is not supported: use UTF-8 (or ISO-8859-1)")]
    Charset(String),
}

impl DispositionError {
    /// The API field a problem is about: the file name, or the part as a whole.
    pub fn field(&self) -> &'static str {
        let param = match self {
            DispositionError::MissingValue(p)
            | DispositionError::Duplicate(p)
            | DispositionError::UnterminatedQuote(p)
            | DispositionError::ControlCharacter(p)
            | DispositionError::BadPercent(p)
            | DispositionError::NotUtf8(p)
            | DispositionError::Garbage { param: p, .. }
            | DispositionError::BadToken { param: p, .. }
            | DispositionError::Backslash { param: p, .. } => p.as_str(),
            DispositionError::BadExtValue | DispositionError::Charset(_) => "filename*",
            _ => "",
        };
        if param.starts_with("filename") {
            "filename"
        } else {
            "file"
        }
    }
}

/// The part's disposition; `None` when the part has no Content-Disposition at all.
pub fn of_part(headers: &http::HeaderMap) -> Result<Option<Disposition>, DispositionError> {
    let mut values = headers.get_all(http::header::CONTENT_DISPOSITION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(DispositionError::DuplicateHeader);
    }
    parse(value.as_bytes()).map(Some)
}

/// Parses a `Content-Disposition` value of a form part.
pub fn parse(header: &[u8]) -> Result<Disposition, DispositionError> {
    let mut input = Input {
        bytes: header,
        at: 0,
    };
    input.skip_whitespace();
    let kind = input.token();
    if !kind.eq_ignore_ascii_case(b"form-data") {
        let shown = String::from_utf8_lossy(&header[input.at - kind.len()..]);
        return Err(DispositionError::NotFormData(shown.trim().to_string()));
    }
    let mut last = "form-data".to_string();
    let mut params: Vec<(String, Value)> = Vec::new();
    loop {
        input.skip_whitespace();
        match input.peek() {
            None => break,
            Some(b';') => input.at += 1,
            Some(_) => {
                return Err(DispositionError::Garbage {
                    param: last,
                    found: input.rest_lossy(),
                })
            }
        }
        input.skip_whitespace();
        if input.peek().is_none() {
            break; // a trailing ';' is harmless
        }
        let name = input.token().to_ascii_lowercase();
        if name.is_empty() {
            return Err(DispositionError::ExpectedParameter(input.rest_lossy()));
        }
        let name = String::from_utf8_lossy(&name).into_owned();
        input.skip_whitespace();
        if input.peek() != Some(b'=') {
            return Err(DispositionError::MissingValue(name));
        }
        input.at += 1;
        input.skip_whitespace();
        let value = if input.peek() == Some(b'"') {
            Value::Quoted(input.quoted_string(&name)?)
        } else {
            Value::Bare(input.bare_value().to_vec())
        };
        if params.iter().any(|(p, _)| *p == name) {
            return Err(DispositionError::Duplicate(name));
        }
        last.clone_from(&name);
        params.push((name, value));
    }

    let mut disposition = Disposition::default();
    let mut extended = None;
    for (param, value) in params {
        match param.as_str() {
            "name" => disposition.name = Some(plain_value(&param, value)?),
            "filename" => disposition.filename = Some(plain_value(&param, value)?),
            "filename*" => extended = Some(ext_value(value)?),
            _ => {
                if let Value::Bare(bytes) = value {
                    check_token(&param, &bytes)?;
                }
            }
        }
    }
    if extended.is_some() {
        disposition.filename = extended;
    }
    Ok(disposition)
}

enum Value {
    /// Unescaped content of a quoted-string.
    Quoted(Vec<u8>),
    /// The bytes up to the next `;`, whitespace or quote, as sent.
    Bare(Vec<u8>),
}

struct Input<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn rest_lossy(&self) -> String {
        String::from_utf8_lossy(&self.bytes[self.at..]).into_owned()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    fn token(&mut self) -> &'a [u8] {
        let start = self.at;
        while self.peek().is_some_and(is_tchar) {
            self.at += 1;
        }
        &self.bytes[start..self.at]
    }

    fn bare_value(&mut self) -> &'a [u8] {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|b| !matches!(b, b';' | b' ' | b'\t' | b'"'))
        {
            self.at += 1;
        }
        &self.bytes[start..self.at]
    }

    /// RFC 9110 quoted-string: `"` *( qdtext / `\` char ) `"`, with only `\"` and `\\` accepted.
    fn quoted_string(&mut self, param: &str) -> Result<Vec<u8>, DispositionError> {
        self.at += 1;
        let mut value = Vec::new();
        loop {
            let Some(byte) = self.peek() else {
                return Err(DispositionError::UnterminatedQuote(param.to_string()));
            };
            self.at += 1;
            match byte {
                b'"' => return Ok(value),
                b'\\' => match self.peek() {
                    None => return Err(DispositionError::UnterminatedQuote(param.to_string())),
                    Some(escaped @ (b'"' | b'\\')) => {
                        value.push(escaped);
                        self.at += 1;
                    }
                    Some(_) => {
                        let found = char_at(&self.bytes[self.at..]);
                        return Err(DispositionError::Backslash {
                            param: param.to_string(),
                            found,
                        });
                    }
                },
                b'\t' => value.push(byte),
                0x00..=0x1F | 0x7F => {
                    return Err(DispositionError::ControlCharacter(param.to_string()))
                }
                _ => value.push(byte),
            }
        }
    }
}

/// The first character of `bytes` (for messages), or U+FFFD.
fn char_at(bytes: &[u8]) -> char {
    let end = bytes.len().min(4);
    (1..=end)
        .find_map(|n| std::str::from_utf8(&bytes[..n]).ok())
        .and_then(|s| s.chars().next())
        .unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// RFC 9110 `tchar`.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// A token; raw UTF-8 is tolerated in it (clients send it, and it is unambiguous).
fn check_token(param: &str, bytes: &[u8]) -> Result<(), DispositionError> {
    match bytes.iter().find(|&&b| b < 0x80 && !is_tchar(b)) {
        Some(&b) if b < 0x20 || b == 0x7F => {
            Err(DispositionError::ControlCharacter(param.to_string()))
        }
        Some(&b) => Err(DispositionError::BadToken {
            param: param.to_string(),
            found: char::from(b),
        }),
        None => Ok(()),
    }
}

/// `name` or `filename`: the unquoted text with the browsers' `%22`, `%0D`, `%0A` decoded.
fn plain_value(param: &str, value: Value) -> Result<String, DispositionError> {
    let bytes = match value {
        Value::Quoted(bytes) => bytes,
        Value::Bare(bytes) => {
            check_token(param, &bytes)?;
            bytes
        }
    };
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some(b"%22") => Some(b'"'),
            Some(b"%0D" | b"%0d") => Some(b'\r'),
            Some(b"%0A" | b"%0a") => Some(b'\n'),
            _ => None,
        };
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(decoded).map_err(|_| DispositionError::NotUtf8(param.to_string()))
}

/// RFC 8187 `ext-value`: `charset "'" [ language ] "'" value-chars`.
///
/// The value is read up to the next `;` or whitespace; ASCII characters outside `attr-char`
/// (such as `(` or `'`, which some clients leave unencoded) are taken as themselves since they
/// are unambiguous there, but raw non-ASCII bytes and bad `%` escapes are refused.
fn ext_value(value: Value) -> Result<String, DispositionError> {
    let Value::Bare(bytes) = value else {
        return Err(DispositionError::BadExtValue);
    };
    let mut parts = bytes.splitn(3, |&b| b == b'\'');
    let (Some(charset), Some(language), Some(encoded)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(DispositionError::BadExtValue);
    };
    if charset.is_empty()
        || !charset.iter().all(|&b| is_tchar(b) && b != b'\'')
        || !language
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
        || !encoded.is_ascii()
    {
        return Err(DispositionError::BadExtValue);
    }
    let decoded = percent_decode(encoded)
        .ok_or_else(|| DispositionError::BadPercent("filename*".to_string()))?;
    if charset.eq_ignore_ascii_case(b"utf-8") {
        String::from_utf8(decoded).map_err(|_| DispositionError::NotUtf8("filename*".to_string()))
    } else if charset.eq_ignore_ascii_case(b"iso-8859-1") {
        Ok(decoded.into_iter().map(char::from).collect())
    } else {
        Err(DispositionError::Charset(
            String::from_utf8_lossy(charset).into_owned(),
        ))
    }
}

fn percent_decode(encoded: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(encoded.len());
    let mut i = 0;
    while i < encoded.len() {
        if encoded[i] == b'%' {
            let hex = encoded.get(i + 1..i + 3)?;
            let text = std::str::from_utf8(hex).ok()?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(text, 16).ok()?);
            i += 3;
        } else {
            out.push(encoded[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filename(header: &str) -> Result<Option<String>, DispositionError> {
        parse(header.as_bytes()).map(|d| d.filename)
    }

    fn named(name: &str) -> Result<Option<String>, DispositionError> {
        Ok(Some(name.to_string()))
    }

    #[test]
    fn plain_quoted_and_token_filenames() {
        let d = parse(br#"form-data; name="file"; filename="data.csv""#).unwrap();
        assert_eq!(d.name.as_deref(), Some("file"));
        assert_eq!(d.filename.as_deref(), Some("data.csv"));
        assert_eq!(
            filename("form-data; name=file; filename=data.csv"),
            named("data.csv")
        );
        assert_eq!(
            filename("Form-Data;NAME=\"file\" ;  FileName = \"a b.csv\" ;"),
            named("a b.csv")
        );
        assert_eq!(filename("form-data; name=\"file\""), Ok(None));
    }

    #[test]
    fn raw_utf8_in_a_quoted_filename_is_kept() {
        assert_eq!(
            filename("form-data; name=\"file\"; filename=\"résumé 📈.csv\""),
            named("résumé 📈.csv")
        );
        assert_eq!(
            parse(b"form-data; name=\"file\"; filename=\"caf\xe9.csv\""),
            Err(DispositionError::NotUtf8("filename".into()))
        );
    }

    #[test]
    fn escaped_quote_is_unescaped_not_truncated() {
        assert_eq!(
            filename(r#"form-data; name="file"; filename="we\"ird1.csv""#),
            named("we\"ird1.csv")
        );
        assert_eq!(
            filename(r#"form-data; name="file"; filename="\"q\"""#),
            named("\"q\"")
        );
        // `\\` is a backslash (then refused by the name rules, not here).
        assert_eq!(
            filename(r#"form-data; name="file"; filename="a\\b.csv""#),
            named("a\\b.csv")
        );
    }

    #[test]
    fn backslash_before_another_character_is_refused() {
        let error = filename(r#"form-data; name="file"; filename="C:\Users\a.csv""#).unwrap_err();
        assert_eq!(
            error,
            DispositionError::Backslash {
                param: "filename".into(),
                found: 'U'
            }
        );
        assert_eq!(error.field(), "filename");
    }

    #[test]
    fn browser_percent_encoded_quote_cr_and_lf_are_decoded() {
        assert_eq!(
            filename(r#"form-data; name="file"; filename="we%22ird2.csv""#),
            named("we\"ird2.csv")
        );
        assert_eq!(
            filename(r#"form-data; name="file"; filename="a%0D%0Ab%0d%0a.csv""#),
            named("a\r\nb\r\n.csv")
        );
    }

    #[test]
    fn other_percent_signs_in_filename_stay_literal() {
        for name in ["100%.csv", "50%25.csv", "%41%.csv", "a%2", "%"] {
            assert_eq!(
                filename(&format!("form-data; name=\"file\"; filename=\"{name}\"")),
                named(name)
            );
        }
    }

    #[test]
    fn extended_filename_in_utf8_is_decoded() {
        assert_eq!(
            filename("form-data; name=\"file\"; filename*=UTF-8''%F0%9F%93%88%20caf%C3%A9.csv"),
            named("📈 café.csv")
        );
        assert_eq!(
            filename("form-data; name=\"file\"; filename*=utf-8'fr'r%C3%A9sum%C3%A9(1).csv"),
            named("résumé(1).csv")
        );
        assert_eq!(
            filename("form-data; name=\"file\"; filename*=UTF-8''it's+here.csv"),
            named("it's+here.csv")
        );
    }

    #[test]
    fn extended_filename_wins_over_filename_in_either_order() {
        assert_eq!(
            filename(
                "form-data; name=\"file\"; filename=\"cafe.csv\"; filename*=UTF-8''caf%C3%A9.csv"
            ),
            named("café.csv")
        );
        assert_eq!(
            filename(
                "form-data; filename*=UTF-8''caf%C3%A9.csv; name=\"file\"; filename=\"cafe.csv\""
            ),
            named("café.csv")
        );
    }

    #[test]
    fn extended_filename_in_iso_8859_1_is_decoded() {
        assert_eq!(
            filename("form-data; name=\"file\"; filename*=ISO-8859-1''caf%E9%20%A3.csv"),
            named("café £.csv")
        );
    }

    #[test]
    fn other_charsets_are_refused() {
        let error =
            filename("form-data; name=\"file\"; filename*=windows-1252''caf%E9.csv").unwrap_err();
        assert_eq!(error, DispositionError::Charset("windows-1252".into()));
        assert_eq!(error.field(), "filename");
        assert_eq!(
            error.to_string(),
            "charset \"windows-1252\" of `filename*` is not supported: use UTF-8 (or ISO-8859-1)"
        );
    }

    #[test]
    fn malformed_extended_filenames_are_refused() {
        for (header, expected) in [
            (
                "form-data; filename*=UTF-8''caf%C3%A.csv",
                DispositionError::BadPercent("filename*".into()),
            ),
            (
                "form-data; filename*=UTF-8''100%",
                DispositionError::BadPercent("filename*".into()),
            ),
            (
                "form-data; filename*=UTF-8''%zz",
                DispositionError::BadPercent("filename*".into()),
            ),
            (
                "form-data; filename*=UTF-8''%C3%28",
                DispositionError::NotUtf8("filename*".into()),
            ),
            (
                "form-data; filename*=\"UTF-8''a.csv\"",
                DispositionError::BadExtValue,
            ),
            ("form-data; filename*=a.csv", DispositionError::BadExtValue),
            (
                "form-data; filename*=''a.csv",
                DispositionError::BadExtValue,
            ),
            (
                "form-data; filename*=UTF-8''café.csv",
                DispositionError::BadExtValue,
            ),
        ] {
            assert_eq!(filename(header), Err(expected), "{header}");
        }
    }

    #[test]
    fn unterminated_quote_is_refused() {
        for header in [
            r#"form-data; name="file"; filename="data.csv"#,
            r#"form-data; name="file"; filename="data.csv\"#,
        ] {
            assert_eq!(
                filename(header),
                Err(DispositionError::UnterminatedQuote("filename".into())),
                "{header}"
            );
        }
        assert_eq!(
            filename(r#"form-data; name="file; filename="a.csv""#),
            Err(DispositionError::Garbage {
                param: "name".into(),
                found: "a.csv\"".into()
            })
        );
    }

    #[test]
    fn text_after_a_value_is_refused() {
        assert_eq!(
            filename(r#"form-data; name="file"; filename="a.csv"junk"#),
            Err(DispositionError::Garbage {
                param: "filename".into(),
                found: "junk".into()
            })
        );
        assert_eq!(
            filename("form-data; name=\"file\"; filename=a b.csv"),
            Err(DispositionError::Garbage {
                param: "filename".into(),
                found: "b.csv".into()
            })
        );
        assert_eq!(
            filename("form-data; name=\"file\"; filename=a(1).csv"),
            Err(DispositionError::BadToken {
                param: "filename".into(),
                found: '('
            })
        );
        assert_eq!(
            filename("form-data junk; name=\"file\""),
            Err(DispositionError::Garbage {
                param: "form-data".into(),
                found: "junk; name=\"file\"".into()
            })
        );
    }

    #[test]
    fn duplicate_parameters_are_refused() {
        let error =
            filename(r#"form-data; name="file"; filename="a.csv"; FILENAME="b.csv""#).unwrap_err();
        assert_eq!(error, DispositionError::Duplicate("filename".into()));
        assert_eq!(error.field(), "filename");
        let error = filename(r#"form-data; name="file"; name="other""#).unwrap_err();
        assert_eq!(error, DispositionError::Duplicate("name".into()));
        assert_eq!(error.field(), "file");
        assert_eq!(
            filename("form-data; filename*=UTF-8''a; filename*=UTF-8''b"),
            Err(DispositionError::Duplicate("filename*".into()))
        );
    }

    #[test]
    fn other_malformed_headers_are_refused() {
        assert_eq!(
            filename("attachment; filename=\"a.csv\""),
            Err(DispositionError::NotFormData(
                "attachment; filename=\"a.csv\"".into()
            ))
        );
        assert_eq!(
            filename("form-data; =\"a\""),
            Err(DispositionError::ExpectedParameter("=\"a\"".into()))
        );
        assert_eq!(
            filename("form-data; name"),
            Err(DispositionError::MissingValue("name".into()))
        );
        assert_eq!(
            parse(b"form-data; filename=\"a\x01b\""),
            Err(DispositionError::ControlCharacter("filename".into()))
        );
    }

    #[test]
    fn field_names_are_read_like_filenames() {
        let d = parse(br#"form-data; name="my%22field""#).unwrap();
        assert_eq!(d.name.as_deref(), Some("my\"field"));
        let d = parse(br#"form-data; name="file"; filename="a.csv"; size=3"#).unwrap();
        assert_eq!(d.name.as_deref(), Some("file"));
    }

    #[test]
    fn a_part_has_at_most_one_disposition_header() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(of_part(&headers), Ok(None));
        headers.append(
            http::header::CONTENT_DISPOSITION,
            http::HeaderValue::from_static("form-data; name=\"file\"; filename=\"a\""),
        );
        assert_eq!(
            of_part(&headers).unwrap().unwrap().filename.as_deref(),
            Some("a")
        );
        headers.append(
            http::header::CONTENT_DISPOSITION,
            http::HeaderValue::from_static("form-data; name=\"file\"; filename=\"b\""),
        );
        assert_eq!(of_part(&headers), Err(DispositionError::DuplicateHeader));
    }
}
