//! Arbitrary bytes through `TarReader`, walked twice: once reading every member's content
//! through a small buffer, once skipping every content, from a source that hands out a few
//! bytes per read. Either walk may fail; neither may panic, hang or allocate past the reader's
//! documented bounds. Both walks must see the same members and end the same way, and a walk
//! that succeeds must hand out pieces (inline bytes, contents, trailer) that concatenate to the
//! input: that is what lets the swarm rebuild an archive bit for bit.
#![no_main]

use std::io::{self, Read};

use dfpull::image::tar::{BLOCK, Entry, MAX_TRAILER, Member, TarReader};
use libfuzzer_sys::fuzz_target;

/// How a walk treats member contents.
#[derive(Clone, Copy, PartialEq)]
enum Contents {
    Read,
    Skip,
}

/// What a walk saw: the members, and how it ended (the error's text, or the trailer's length).
type Walk = (Vec<Member>, Result<usize, String>);

fuzz_target!(|data: &[u8]| {
    let read = walk(data, data, Contents::Read);
    let skipped = walk(data, Trickle { data, at: 0 }, Contents::Skip);
    assert_eq!(
        read.0, skipped.0,
        "the members do not depend on how contents are read"
    );
    assert_eq!(read.1, skipped.1, "nor does how the walk ends");
});

fn walk(data: &[u8], src: impl Read, contents: Contents) -> Walk {
    let mut reader = TarReader::new(src);
    let mut members = Vec::new();
    // The input, rebuilt from the pieces handed out (only meaningful when contents are read).
    let mut rebuilt = Vec::with_capacity(data.len());
    let mut buf = [0u8; 700];
    loop {
        let entry = match reader.next_entry() {
            Ok(e) => e,
            Err(e) => return (members, Err(e.to_string())),
        };
        match entry {
            Entry::Member(m) => {
                rebuilt.extend_from_slice(&m.inline);
                assert!(
                    m.offset <= data.len() as u64,
                    "content starts inside the input"
                );
                if contents == Contents::Read {
                    assert_eq!(m.offset, rebuilt.len() as u64, "offset of {:?}", m.path);
                    let mut got = 0u64;
                    loop {
                        match reader.read_content(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                got += n as u64;
                                rebuilt.extend_from_slice(&buf[..n]);
                            }
                            Err(e) => {
                                members.push(m);
                                return (members, Err(e.to_string()));
                            }
                        }
                    }
                    assert_eq!(got, m.size, "content of {:?}", m.path);
                    assert_eq!(reader.position(), m.offset + m.size);
                }
                assert!(!m.path.starts_with('/') && !m.path.split('/').any(|p| p == ".."));
                members.push(m);
            }
            Entry::End(trailer) => {
                assert!(trailer.len() as u64 <= MAX_TRAILER + BLOCK as u64);
                if contents == Contents::Read {
                    rebuilt.extend_from_slice(&trailer);
                    assert!(rebuilt == data, "the pieces concatenate to the input");
                }
                assert_eq!(
                    reader.position(),
                    data.len() as u64,
                    "a finished walk read it all"
                );
                // Asking again after the end is harmless.
                assert!(matches!(reader.next_entry(), Ok(Entry::End(t)) if t.is_empty()));
                return (members, Ok(trailer.len()));
            }
        }
    }
}

/// A source that hands out 1 to 7 bytes per read, like a slow pipe.
struct Trickle<'a> {
    data: &'a [u8],
    at: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (1 + self.at % 7)
            .min(buf.len())
            .min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
