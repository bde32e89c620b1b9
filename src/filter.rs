//! Keyword filtering: a word list from a file, matched case-insensitively
//! (Unicode lowercase) with aho-corasick and replaced by `***`.
//!
//! aho-corasick's own case folding is ASCII-only, so both the words and the
//! text are lowercased char by char, and matches are mapped back to byte
//! ranges of the original text (lowercasing can change a char's length).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use parking_lot::RwLock;

use crate::protocol::Content;

pub const MASK: &str = "***";

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Build { path: PathBuf, msg: String },
}

/// One immutable word list.
struct Words {
    matcher: Option<AhoCorasick>,
    count: usize,
}

impl Words {
    fn empty() -> Self {
        Words {
            matcher: None,
            count: 0,
        }
    }

    fn parse(text: &str) -> Result<Self, String> {
        let mut words: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(fold)
            .collect();
        words.sort();
        words.dedup();
        if words.is_empty() {
            return Ok(Words::empty());
        }
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&words)
            .map_err(|e| e.to_string())?;
        Ok(Words {
            count: words.len(),
            matcher: Some(matcher),
        })
    }

    /// `text` with every match masked, or `None` when nothing matched.
    fn mask(&self, text: &str) -> Option<String> {
        let matcher = self.matcher.as_ref()?;
        // The folded text, and for each of its bytes the original char's span.
        let mut folded = String::with_capacity(text.len());
        let mut spans: Vec<(usize, usize)> = Vec::with_capacity(text.len());
        for (i, c) in text.char_indices() {
            let span = (i, i + c.len_utf8());
            for l in c.to_lowercase() {
                folded.push(l);
                spans.extend(std::iter::repeat_n(span, l.len_utf8()));
            }
        }
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        for m in matcher.find_iter(&folded) {
            let (start, _) = spans[m.start()];
            let (_, end) = spans[m.end() - 1];
            if start < copied {
                continue;
            }
            out.push_str(&text[copied..start]);
            out.push_str(MASK);
            copied = end;
        }
        if copied == 0 && out.is_empty() {
            return None;
        }
        out.push_str(&text[copied..]);
        Some(out)
    }
}

fn fold(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

/// The live word list; swapped whole on reload, so a filter in progress
/// finishes with the list it started with.
pub struct KeywordFilter {
    words: RwLock<Arc<Words>>,
}

impl KeywordFilter {
    /// Loads `path` (no filtering when `None`).
    pub fn load(path: Option<&Path>) -> Result<Self, FilterError> {
        Ok(KeywordFilter {
            words: RwLock::new(Arc::new(read(path)?)),
        })
    }

    pub fn from_words(text: &str) -> Self {
        KeywordFilter {
            words: RwLock::new(Arc::new(
                Words::parse(text).unwrap_or_else(|_| Words::empty()),
            )),
        }
    }

    /// Re-reads the list; on error the old one stays. Returns the word count.
    pub fn reload(&self, path: Option<&Path>) -> Result<usize, FilterError> {
        let words = read(path)?;
        let n = words.count;
        *self.words.write() = Arc::new(words);
        Ok(n)
    }

    pub fn len(&self) -> usize {
        self.words.read().count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Filters text content in place; true when something was masked.
    /// Typed messages (a JSON object with `_lctype`) have only their
    /// `_lctext` filtered, so the JSON and its other fields stay intact.
    /// Binary content is opaque and left alone.
    pub fn apply(&self, content: &mut Content) -> bool {
        let Content::Text(text) = content else {
            return false;
        };
        let words = self.words.read().clone();
        if words.matcher.is_none() {
            return false;
        }
        if let Ok(serde_json::Value::Object(mut obj)) = serde_json::from_str(text)
            && obj.contains_key("_lctype")
        {
            let masked = match obj.get("_lctext") {
                Some(serde_json::Value::String(t)) => words.mask(t),
                _ => None,
            };
            return match masked {
                Some(m) => {
                    obj.insert("_lctext".into(), serde_json::Value::String(m));
                    *text = serde_json::Value::Object(obj).to_string();
                    true
                }
                None => false,
            };
        }
        match words.mask(text) {
            Some(m) => {
                *text = m;
                true
            }
            None => false,
        }
    }
}

fn read(path: Option<&Path>) -> Result<Words, FilterError> {
    let Some(path) = path else {
        return Ok(Words::empty());
    };
    let text = std::fs::read_to_string(path).map_err(|source| FilterError::Io {
        path: path.into(),
        source,
    })?;
    Words::parse(&text).map_err(|msg| FilterError::Build {
        path: path.into(),
        msg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(words: &str, text: &str) -> String {
        let f = KeywordFilter::from_words(words);
        let mut c = Content::Text(text.into());
        f.apply(&mut c);
        match c {
            Content::Text(t) => t,
            Content::Binary(_) => unreachable!(),
        }
    }

    #[test]
    fn masks_case_insensitively_across_scripts() {
        let words = "# comment\ncrap\nΣΟΦΊΑ\n坏蛋\nStraße\n\n";
        assert_eq!(masked(words, "CRAP and Crap"), "*** and ***");
        assert_eq!(masked(words, "ἡ σοφία του"), "ἡ *** του");
        assert_eq!(masked(words, "你这个坏蛋!"), "你这个***!");
        assert_eq!(masked(words, "STRASSE vs STRAßE"), "STRASSE vs ***");
        assert_eq!(masked(words, "clean"), "clean");
    }

    #[test]
    fn chars_whose_lowercase_is_longer_map_back() {
        // 'İ' lowercases to two chars ("i̇"), so folded offsets differ.
        assert_eq!(masked("i̇stanbul", "İSTANBUL, İstanbul!"), "***, ***!");
        assert_eq!(masked("bad", "İİ bad İİ"), "İİ *** İİ");
    }

    #[test]
    fn longest_match_wins_and_binary_is_left_alone() {
        assert_eq!(masked("ab\nabcd", "xabcdx"), "x***x");
        let f = KeywordFilter::from_words("ab");
        let mut b = Content::Binary(b"ab".to_vec());
        assert!(!f.apply(&mut b));
    }

    #[test]
    fn typed_messages_keep_their_json() {
        let out = masked(
            "text\ncrap",
            r#"{"_lctype":-1,"_lctext":"Holy crap!","_lcattrs":{"text":"crap"}}"#,
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["_lctext"], "Holy ***!");
        assert_eq!(v["_lcattrs"]["text"], "crap");
        assert_eq!(v["_lctype"], -1);
    }

    #[test]
    fn reload_swaps_the_list_and_keeps_it_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("words.txt");
        std::fs::write(&path, "one\n").unwrap();
        let f = KeywordFilter::load(Some(&path)).unwrap();
        assert_eq!(f.len(), 1);
        std::fs::write(&path, "one\ntwo\n").unwrap();
        assert_eq!(f.reload(Some(&path)).unwrap(), 2);
        assert!(f.reload(Some(&dir.path().join("missing"))).is_err());
        assert_eq!(f.len(), 2);
    }
}
