//! File names: the one place where a name the user sent becomes the name that is stored,
//! compared for uniqueness and put in an object key.
//!
//! A name is normalised to Unicode NFC (so `café` typed on macOS, NFD, and on Linux, NFC, is one
//! name), then checked. It is never shortened or otherwise altered: a name that cannot be stored
//! as sent is refused with the reason.

use std::fmt;

use unicode_normalization::{is_nfc, UnicodeNormalization};
use unicode_properties::{GeneralCategory, UnicodeEmoji, UnicodeGeneralCategory};

pub const MAX_FILENAME_BYTES: usize = 255;

/// Why a file name is refused. Checked before anything is written anywhere.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilenameError {
    #[error("filename is empty")]
    Empty,
    #[error("filename is {0} bytes long in UTF-8 (after NFC normalisation); the limit is {MAX_FILENAME_BYTES}")]
    TooLong(usize),
    #[error("filename must not contain '/' or '\\'")]
    Separator,
    #[error("filename must not contain '..'")]
    DotDot,
    #[error("filename must not contain the control character or line break {}", code_point(*.0))]
    Control(char),
    #[error("filename must not contain the invisible or bidirectional formatting character {}", code_point(*.0))]
    Invisible(char),
    #[error("filename must not contain the private-use character {}: it displays differently on every system", code_point(*.0))]
    PrivateUse(char),
    #[error("filename must not contain {}, which is not an assigned character (Unicode {}.{})", code_point(*.0), unicode_properties::UNICODE_VERSION.0, unicode_properties::UNICODE_VERSION.1)]
    Unassigned(char),
    #[error("filename must not be '.' or start or end with whitespace")]
    Unusual,
}

fn code_point(c: char) -> String {
    format!("U+{:04X}", c as u32)
}

/// A file name as stored: NFC, at most [`MAX_FILENAME_BYTES`] bytes, a plain name (never a
/// path) with nothing invisible in it. The only way to build one is [`FileName::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileName(String);

impl FileName {
    /// Normalises `raw` to NFC, then checks it. Used by every route that takes a name, so that
    /// two spellings of one name are one file.
    pub fn parse(raw: &str) -> Result<Self, FilenameError> {
        let name = if is_nfc(raw) {
            raw.to_string()
        } else {
            raw.nfc().collect()
        };
        check(&name)?;
        Ok(FileName(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for FileName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

fn check(name: &str) -> Result<(), FilenameError> {
    if name.is_empty() {
        return Err(FilenameError::Empty);
    }
    if name.len() > MAX_FILENAME_BYTES {
        return Err(FilenameError::TooLong(name.len()));
    }
    if name.contains(['/', '\\']) {
        return Err(FilenameError::Separator);
    }
    if name.contains("..") {
        return Err(FilenameError::DotDot);
    }
    let mut previous = None;
    for c in name.chars() {
        refuse_char(c, previous)?;
        previous = Some(c);
    }
    if name == "." || name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        return Err(FilenameError::Unusual);
    }
    Ok(())
}

/// Refuses what a person cannot see or would not expect in a name: controls and line breaks,
/// every format character (general category Cf: bidi overrides and isolates, zero-width
/// characters, the BOM, the soft hyphen, tags, ...), the other default-ignorable characters
/// that render as nothing, private-use and unassigned code points (their look and, for
/// unassigned ones, their future normalisation are unknown).
fn refuse_char(c: char, previous: Option<char>) -> Result<(), FilenameError> {
    match c.general_category() {
        GeneralCategory::Control
        | GeneralCategory::LineSeparator
        | GeneralCategory::ParagraphSeparator => Err(FilenameError::Control(c)),
        GeneralCategory::Format => Err(FilenameError::Invisible(c)),
        GeneralCategory::PrivateUse => Err(FilenameError::PrivateUse(c)),
        GeneralCategory::Unassigned | GeneralCategory::Surrogate => {
            Err(FilenameError::Unassigned(c))
        }
        _ if is_presentation_selector_after_emoji(c, previous) => Ok(()),
        _ if is_invisible_non_format(c) => Err(FilenameError::Invisible(c)),
        _ => Ok(()),
    }
}

/// U+FE0E / U+FE0F right after an emoji choose its text or colour form (`❤️` is U+2764 U+FE0F):
/// visible, and what phones type.
fn is_presentation_selector_after_emoji(c: char, previous: Option<char>) -> bool {
    matches!(c, '\u{FE0E}' | '\u{FE0F}') && previous.is_some_and(|p| p.is_emoji_char())
}

/// Default-ignorable code points (Unicode's DerivedCoreProperties) that are not Cf: they
/// display as nothing on their own.
fn is_invisible_non_format(c: char) -> bool {
    matches!(
        c,
        '\u{034F}'                      // combining grapheme joiner
            | '\u{115F}' | '\u{1160}'   // Hangul choseong / jungseong fillers
            | '\u{17B4}' | '\u{17B5}'   // Khmer inherent vowels
            | '\u{180B}'..='\u{180D}'   // Mongolian free variation selectors
            | '\u{180F}'
            | '\u{3164}'                // Hangul filler
            | '\u{FE00}'..='\u{FE0F}'   // variation selectors
            | '\u{FFA0}'                // half-width Hangul filler
            | '\u{E0100}'..='\u{E01EF}' // variation selectors supplement
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str) -> Result<String, FilenameError> {
        FileName::parse(name).map(|n| n.as_str().to_string())
    }

    #[test]
    fn plain_names_are_accepted_as_sent() {
        for name in [
            "data.csv",
            "résultats 2024.txt",
            "a",
            ".hidden",
            "x.tar.gz",
            "we\"ird1.csv",
            "100%.csv",
            "📈 results.csv",
            "❤\u{FE0F}.txt",
            "日本語のファイル.dat",
            "עברית.csv",
        ] {
            assert_eq!(parse(name).as_deref(), Ok(name), "{name}");
        }
    }

    #[test]
    fn nfd_name_is_stored_in_nfc() {
        assert_eq!(parse("cafe\u{301}.csv").as_deref(), Ok("caf\u{e9}.csv"));
        assert_eq!(
            FileName::parse("cafe\u{301}.csv"),
            FileName::parse("caf\u{e9}.csv")
        );
        // A compatibility character is not folded: NFC, not NFKC.
        assert_eq!(parse("ﬁle.txt").as_deref(), Ok("ﬁle.txt"));
    }

    #[test]
    fn filename_with_dot_dot_is_refused() {
        assert_eq!(parse(".."), Err(FilenameError::DotDot));
        assert_eq!(parse("a..b"), Err(FilenameError::DotDot));
    }

    #[test]
    fn paths_and_control_characters_are_refused() {
        assert_eq!(parse(""), Err(FilenameError::Empty));
        assert_eq!(parse("a/b"), Err(FilenameError::Separator));
        assert_eq!(parse("a\\b"), Err(FilenameError::Separator));
        assert_eq!(parse("a\0b"), Err(FilenameError::Control('\0')));
        assert_eq!(parse("a\nb"), Err(FilenameError::Control('\n')));
        assert_eq!(parse("a\u{7f}"), Err(FilenameError::Control('\u{7f}')));
        assert_eq!(parse("a\u{85}b"), Err(FilenameError::Control('\u{85}')));
        assert_eq!(parse("a\u{2028}b"), Err(FilenameError::Control('\u{2028}')));
        assert_eq!(parse("a\u{2029}b"), Err(FilenameError::Control('\u{2029}')));
    }

    #[test]
    fn leading_or_trailing_whitespace_and_dot_are_refused() {
        for name in [" a", "a ", "a\u{a0}", "\u{3000}a", "."] {
            assert_eq!(parse(name), Err(FilenameError::Unusual), "{name:?}");
        }
        assert!(parse("a b").is_ok());
    }

    #[test]
    fn right_to_left_override_is_refused() {
        let error = parse("invoice\u{202E}fdp.exe").unwrap_err();
        assert_eq!(error, FilenameError::Invisible('\u{202E}'));
        assert_eq!(
            error.to_string(),
            "filename must not contain the invisible or bidirectional formatting character U+202E"
        );
    }

    #[test]
    fn zero_width_space_and_bom_are_refused() {
        assert_eq!(
            parse("a\u{200B}.csv"),
            Err(FilenameError::Invisible('\u{200B}'))
        );
        assert_eq!(
            parse("\u{FEFF}a.csv"),
            Err(FilenameError::Invisible('\u{FEFF}'))
        );
    }

    /// Every format character (general category Cf, as of Unicode 16), range by range.
    #[test]
    fn every_format_character_is_refused() {
        let cf: &[(u32, u32)] = &[
            (0x00AD, 0x00AD),
            (0x0600, 0x0605),
            (0x061C, 0x061C),
            (0x06DD, 0x06DD),
            (0x070F, 0x070F),
            (0x0890, 0x0891),
            (0x08E2, 0x08E2),
            (0x180E, 0x180E),
            (0x200B, 0x200F),
            (0x202A, 0x202E),
            (0x2060, 0x2064),
            (0x2066, 0x206F),
            (0xFEFF, 0xFEFF),
            (0xFFF9, 0xFFFB),
            (0x110BD, 0x110BD),
            (0x110CD, 0x110CD),
            (0x13430, 0x1343F),
            (0x1BCA0, 0x1BCA3),
            (0x1D173, 0x1D17A),
            (0xE0001, 0xE0001),
            (0xE0020, 0xE007F),
        ];
        for &(first, last) in cf {
            for code in first..=last {
                let c = char::from_u32(code).unwrap();
                assert_eq!(
                    parse(&format!("a{c}b")),
                    Err(FilenameError::Invisible(c)),
                    "U+{code:04X}"
                );
            }
        }
    }

    #[test]
    fn other_invisible_characters_are_refused() {
        for c in [
            '\u{034F}',
            '\u{115F}',
            '\u{3164}',
            '\u{FFA0}',
            '\u{180B}',
            '\u{FE00}',
            '\u{E0100}',
        ] {
            assert_eq!(
                parse(&format!("a{c}b")),
                Err(FilenameError::Invisible(c)),
                "{c:?}"
            );
        }
        // The emoji presentation selector is only accepted after an emoji.
        assert_eq!(
            parse("a\u{FE0F}b"),
            Err(FilenameError::Invisible('\u{FE0F}'))
        );
    }

    #[test]
    fn private_use_and_unassigned_code_points_are_refused() {
        assert_eq!(
            parse("logo\u{F8FF}.png"),
            Err(FilenameError::PrivateUse('\u{F8FF}'))
        );
        assert_eq!(
            parse("a\u{10FFFD}"),
            Err(FilenameError::PrivateUse('\u{10FFFD}'))
        );
        assert_eq!(
            parse("a\u{0378}b"),
            Err(FilenameError::Unassigned('\u{0378}'))
        );
        assert_eq!(
            parse("a\u{FFFE}b"),
            Err(FilenameError::Unassigned('\u{FFFE}'))
        );
    }

    #[test]
    fn length_is_measured_in_bytes_after_nfc() {
        let at_limit = format!("{}.csv", "x".repeat(251));
        assert_eq!(at_limit.len(), 255);
        assert_eq!(parse(&at_limit).as_deref(), Ok(at_limit.as_str()));
        assert_eq!(
            parse(&format!("{}.csv", "x".repeat(252))),
            Err(FilenameError::TooLong(256))
        );
        // 256 bytes as sent (NFD) but 255 once composed: accepted.
        let nfd = format!("{}e\u{301}", "x".repeat(253));
        assert_eq!(nfd.len(), 256);
        assert_eq!(parse(&nfd).map(|n| n.len()), Ok(255));
        // 253 bytes as sent, but U+0958 is a composition exclusion: NFC decomposes it into two
        // characters, 256 bytes.
        let grows = format!("{}\u{958}", "x".repeat(250));
        assert_eq!(grows.len(), 253);
        assert_eq!(parse(&grows), Err(FilenameError::TooLong(256)));
    }
}
