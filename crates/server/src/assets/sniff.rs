//! What an upload may be, and proof that its bytes are what it says. A declared content type must
//! be on the allow-list and belong to the asset's type; the bytes are sniffed (magic numbers, by
//! the `infer` crate) and must be that type; the first bytes must not carry markup a browser or an
//! interpreter would run (`<script`, `<html`, `<?php`…: the usual polyglot), and an image must
//! not end in a ZIP archive (GIFAR-style). The check runs on the stream as it passes, holding only
//! the head and (for images) a tail window, so any size streams in constant memory; its verdict
//! comes before the stream ends, so a refused body is never committed by the blob store.

use crate::storage::ByteStream;
use airwave_api::AssetType;
use bytes::Bytes;
use futures_util::Stream;
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

/// How many leading bytes are sniffed.
pub const HEAD_BYTES: usize = 8 * 1024;
/// A ZIP's end-of-central-directory record lies within this many bytes of its end.
const ZIP_TAIL_BYTES: usize = 22 + 65_535;

/// A content type this server can verify.
#[derive(Debug, Clone, Copy)]
pub struct Known {
    pub mime: &'static str,
    pub asset_type: AssetType,
    pub extension: &'static str,
    matches: fn(&[u8]) -> bool,
}

fn is_text(head: &[u8]) -> bool {
    if head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        // Cut mid-character at the end of the head is still text.
        Err(e) => e.error_len().is_none(),
    }
}

/// Every type the allow-list may name.
pub const KNOWN: &[Known] = &[
    Known {
        mime: "image/png",
        asset_type: AssetType::Image,
        extension: "png",
        matches: infer::image::is_png,
    },
    Known {
        mime: "image/jpeg",
        asset_type: AssetType::Image,
        extension: "jpg",
        matches: infer::image::is_jpeg,
    },
    Known {
        mime: "image/gif",
        asset_type: AssetType::Image,
        extension: "gif",
        matches: infer::image::is_gif,
    },
    Known {
        mime: "image/webp",
        asset_type: AssetType::Image,
        extension: "webp",
        matches: infer::image::is_webp,
    },
    Known {
        mime: "video/mp4",
        asset_type: AssetType::Video,
        extension: "mp4",
        matches: infer::video::is_mp4,
    },
    Known {
        mime: "video/quicktime",
        asset_type: AssetType::Video,
        extension: "mov",
        matches: infer::video::is_mov,
    },
    Known {
        mime: "video/webm",
        asset_type: AssetType::Video,
        extension: "webm",
        matches: infer::video::is_webm,
    },
    Known {
        mime: "audio/mpeg",
        asset_type: AssetType::Audio,
        extension: "mp3",
        matches: infer::audio::is_mp3,
    },
    Known {
        mime: "audio/wav",
        asset_type: AssetType::Audio,
        extension: "wav",
        matches: infer::audio::is_wav,
    },
    Known {
        mime: "audio/ogg",
        asset_type: AssetType::Audio,
        extension: "ogg",
        matches: infer::audio::is_ogg,
    },
    Known {
        mime: "audio/mp4",
        asset_type: AssetType::Audio,
        extension: "m4a",
        matches: infer::audio::is_m4a,
    },
    Known {
        mime: "font/woff",
        asset_type: AssetType::Font,
        extension: "woff",
        matches: infer::font::is_woff,
    },
    Known {
        mime: "font/woff2",
        asset_type: AssetType::Font,
        extension: "woff2",
        matches: infer::font::is_woff2,
    },
    Known {
        mime: "font/ttf",
        asset_type: AssetType::Font,
        extension: "ttf",
        matches: infer::font::is_ttf,
    },
    Known {
        mime: "font/otf",
        asset_type: AssetType::Font,
        extension: "otf",
        matches: infer::font::is_otf,
    },
    Known {
        mime: "text/plain",
        asset_type: AssetType::Text,
        extension: "txt",
        matches: is_text,
    },
];

pub fn known(mime: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|k| k.mime == mime)
}

/// The declared type of a request (`Content-Type`, parameters such as `charset` dropped).
pub fn declared(content_type: Option<&str>) -> Option<String> {
    let t = content_type?.split(';').next()?.trim().to_ascii_lowercase();
    (!t.is_empty()).then_some(t)
}

/// Markup that makes a file something a browser or an interpreter would run.
const ACTIVE_MARKERS: &[&[u8]] = &[
    b"<script",
    b"<html",
    b"<body",
    b"<iframe",
    b"<svg",
    b"<?php",
    b"<?=",
    b"<%",
    b"<!doctype html",
    b"<object",
    b"<embed",
    b"javascript:",
];

/// Why bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the file's bytes are not {0}")]
    NotThatType(&'static str),
    #[error("the file carries markup (`{0}`) that a browser or an interpreter would run")]
    ActiveContent(String),
    #[error("the file ends in a ZIP archive: a polyglot, not a plain {0}")]
    Polyglot(&'static str),
}

/// The verdict on a complete head (or a whole file shorter than one).
pub fn check_head(kind: &Known, head: &[u8]) -> Result<(), Refused> {
    if !(kind.matches)(head) {
        return Err(Refused::NotThatType(kind.mime));
    }
    // In binary data (compressed, entropy-coded) a short marker turns up by chance — a given
    // two bytes somewhere in 8 KiB about one file in eight — so binary types are searched only
    // for markers of five bytes or more (chance: about one in 10^8); text for all of them.
    let text = kind.asset_type == AssetType::Text;
    let lower = head.to_ascii_lowercase();
    if let Some(m) = ACTIVE_MARKERS
        .iter()
        .filter(|m| text || m.len() >= 5)
        .find(|m| lower.windows(m.len()).any(|w| w == **m))
    {
        return Err(Refused::ActiveContent(
            String::from_utf8_lossy(m).into_owned(),
        ));
    }
    Ok(())
}

fn check_tail(kind: &Known, tail: &VecDeque<u8>) -> Result<(), Refused> {
    const EOCD: &[u8] = b"PK\x05\x06";
    let (a, b) = tail.as_slices();
    let joined: Vec<u8>;
    let bytes: &[u8] = if b.is_empty() {
        a
    } else {
        joined = [a, b].concat();
        &joined
    };
    if bytes.windows(EOCD.len()).any(|w| w == EOCD) {
        return Err(Refused::Polyglot(kind.mime));
    }
    Ok(())
}

/// How much of the file the wrapped stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The whole file: the head, the tail and the end are all checked.
    Whole,
    /// The first bytes of a file still arriving: the head is checked once it is complete; a part
    /// that ends sooner is left for the whole-file check.
    Start,
}

/// `body`, checked as it passes: an error (kind `InvalidData`, with a [`Refused`] inside) in
/// place of the end when the bytes are not `kind`.
pub fn inspect(body: ByteStream, kind: &'static Known, scope: Scope) -> ByteStream {
    Box::pin(Inspected {
        inner: body,
        kind,
        scope,
        head: Vec::with_capacity(HEAD_BYTES),
        head_checked: false,
        tail: (kind.asset_type == AssetType::Image).then(VecDeque::new),
        done: false,
    })
}

/// The [`Refused`] inside an error [`inspect`] gave, if it is one.
pub fn refused(e: &std::io::Error) -> Option<&Refused> {
    e.get_ref().and_then(|i| i.downcast_ref::<Refused>())
}

struct Inspected {
    inner: ByteStream,
    kind: &'static Known,
    scope: Scope,
    head: Vec<u8>,
    head_checked: bool,
    tail: Option<VecDeque<u8>>,
    done: bool,
}

impl Inspected {
    fn fail(&mut self, r: Refused) -> Poll<Option<std::io::Result<Bytes>>> {
        self.done = true;
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            r,
        ))))
    }
}

impl Stream for Inspected {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                if !self.head_checked {
                    let want = HEAD_BYTES - self.head.len();
                    let take = want.min(chunk.len());
                    self.head.extend_from_slice(&chunk[..take]);
                    if self.head.len() == HEAD_BYTES {
                        self.head_checked = true;
                        let kind = self.kind;
                        if let Err(r) = check_head(kind, &self.head) {
                            return self.fail(r);
                        }
                    }
                }
                if let Some(tail) = self.tail.as_mut() {
                    tail.extend(chunk.iter());
                    let over = tail.len().saturating_sub(ZIP_TAIL_BYTES);
                    tail.drain(..over);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.done = true;
                if self.scope == Scope::Whole {
                    let kind = self.kind;
                    if !self.head_checked {
                        if let Err(r) = check_head(kind, &self.head) {
                            return self.fail(r);
                        }
                    }
                    if let Some(tail) = &self.tail {
                        if let Err(r) = check_tail(kind, tail) {
                            return self.fail(r);
                        }
                    }
                }
                Poll::Ready(None)
            }
        }
    }
}

/// Why a file name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadName(&'static str);

/// A file name fit for a `Content-Disposition` header: refused when it names a path (`/`, `\`,
/// `..`) or holds control characters; otherwise kept to letters, digits and `._-() `, other
/// characters replaced by `_`, at most 200 bytes, never starting with a dot.
pub fn sanitise_filename(name: &str) -> Result<String, BadName> {
    if name.contains(['/', '\\']) || name == "." || name.contains("..") {
        return Err(BadName(
            "a file name must not name a path (`/`, `\\` or `..`)",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(BadName("a file name must not hold control characters"));
    }
    let mut out = String::new();
    for c in name.trim().chars() {
        let keep = c.is_alphanumeric() && !is_bidi_or_invisible(c)
            || matches!(c, '.' | '_' | '-' | '(' | ')' | ' ');
        let c = if keep { c } else { '_' };
        if out.len() + c.len_utf8() > 200 {
            break;
        }
        out.push(c);
    }
    let out = out.trim_start_matches(['.', ' ']).trim_end().to_owned();
    if out.is_empty() {
        return Err(BadName("a file name needs at least one letter or digit"));
    }
    Ok(out)
}

fn is_bidi_or_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{stream, TryStreamExt as _};

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    async fn run(chunks: Vec<&'static [u8]>, mime: &str, scope: Scope) -> Result<usize, Refused> {
        let body: ByteStream = Box::pin(stream::iter(
            chunks.into_iter().map(|c| Ok(Bytes::from_static(c))),
        ));
        let out: Result<Vec<Bytes>, std::io::Error> = inspect(body, known(mime).unwrap(), scope)
            .try_collect()
            .await;
        match out {
            Ok(v) => Ok(v.iter().map(Bytes::len).sum()),
            Err(e) => Err(refused(&e).cloned().expect("a refusal")),
        }
    }

    #[tokio::test]
    async fn a_real_png_passes_and_a_spoofed_one_does_not() {
        assert_eq!(
            run(vec![PNG, b"rest"], "image/png", Scope::Whole).await,
            Ok(PNG.len() + 4)
        );
        assert_eq!(
            run(vec![b"GIF89a...."], "image/png", Scope::Whole).await,
            Err(Refused::NotThatType("image/png"))
        );
    }

    #[tokio::test]
    async fn markup_in_the_head_and_a_zip_at_the_end_are_polyglots() {
        assert!(matches!(
            run(
                vec![b"GIF89a/*", b"*/=1;<SCRIPT>alert(1)</script>"],
                "image/gif",
                Scope::Whole
            )
            .await,
            Err(Refused::ActiveContent(_))
        ));
        assert_eq!(
            run(
                vec![PNG, b"IEND....PK\x03\x04zip", b"PK\x05\x06\0\0\0\0"],
                "image/png",
                Scope::Whole
            )
            .await,
            Err(Refused::Polyglot("image/png"))
        );
        assert!(matches!(
            run(vec![b"hello <html><body>"], "text/plain", Scope::Whole).await,
            Err(Refused::ActiveContent(_))
        ));
    }

    #[tokio::test]
    async fn a_start_shorter_than_the_head_is_left_to_the_whole_file_check() {
        assert_eq!(run(vec![b"GIF"], "image/png", Scope::Start).await, Ok(3));
        assert!(run(vec![b"GIF"], "image/png", Scope::Whole).await.is_err());
    }

    #[tokio::test]
    async fn noise_in_real_binary_files_is_not_taken_for_markup() {
        // 2,000 PNG heads of pseudo-random bytes: none refused (the short markers `<%`, `<?=`
        // would catch about one in eight).
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..2000 {
            let mut head = PNG.to_vec();
            while head.len() < HEAD_BYTES {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                head.extend_from_slice(&x.to_le_bytes());
            }
            assert_eq!(check_head(known("image/png").unwrap(), &head), Ok(()));
        }
        assert!(check_head(known("text/plain").unwrap(), b"a <% b").is_err());
    }

    #[test]
    fn text_is_utf8_without_nul() {
        assert!(is_text("naïve café".as_bytes()));
        assert!(
            is_text(&"é".as_bytes()[..1]),
            "cut mid-character at the end"
        );
        assert!(!is_text(b"a\0b"));
        assert!(!is_text(b"\xff\xfe\x00"));
    }

    #[test]
    fn names_naming_paths_are_refused_and_others_sanitised() {
        for bad in [
            "../../etc/passwd",
            "a/b.png",
            "..\\win.ini",
            "..",
            "x\u{0}.png",
            "a\nb",
        ] {
            assert!(sanitise_filename(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            sanitise_filename("Summer Sale (v2).png").unwrap(),
            "Summer Sale (v2).png"
        );
        assert_eq!(
            sanitise_filename("\"quoted\";.png").unwrap(),
            "_quoted__.png"
        );
        assert_eq!(sanitise_filename(".htaccess").unwrap(), "htaccess");
        assert_eq!(
            sanitise_filename("evil\u{202E}gnp.exe").unwrap(),
            "evil_gnp.exe"
        );
        assert_eq!(sanitise_filename(&"é".repeat(300)).unwrap().len(), 200);
    }

    #[test]
    fn declared_types_drop_parameters() {
        assert_eq!(
            declared(Some("Text/Plain; charset=utf-8")).as_deref(),
            Some("text/plain")
        );
        assert_eq!(declared(Some("")), None);
        assert_eq!(declared(None), None);
    }
}
