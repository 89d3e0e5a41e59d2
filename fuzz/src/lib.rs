//! What the fuzz targets share: one fuzz input read as a framing, a way to
//! split the bytes into reads, and the bytes.
//!
//! Layout: byte 0 picks the framing (`% 3`: chunk, line, length-prefixed),
//! byte 1 its limit (1 to 64, small so limits are hit; 255: the default),
//! bytes 2 to 5 the read sizes (cycled, each `% 17`; 0 is an empty read; all
//! zero means one read of everything), and the rest is the data.

use stamp_echo::Framing;

/// One fuzz case.
#[derive(Debug)]
pub struct Case<'a> {
    /// The framing, with a small limit most of the time.
    pub framing: Framing,
    /// Read sizes, cycled over the data.
    pub sizes: [usize; 4],
    /// The bytes a peer sends.
    pub data: &'a [u8],
}

impl<'a> Case<'a> {
    /// Reads a case from a fuzz input; `None` if it is too short.
    pub fn parse(input: &'a [u8]) -> Option<Case<'a>> {
        let (head, data) = input.split_at_checked(6)?;
        let framing = match head[0] % 3 {
            0 => Framing::chunk(),
            1 => Framing::line(),
            _ => Framing::length_prefixed(),
        };
        let framing = if head[1] == 255 { framing } else { framing.with_limit(1 + usize::from(head[1] % 64)) };
        let sizes = [head[2], head[3], head[4], head[5]].map(|b| usize::from(b % 17));
        Some(Case { framing, sizes, data })
    }

    /// The data split into reads of the case's sizes: [`reads_of`](Case::reads_of) the data.
    pub fn reads(&self) -> Vec<&'a [u8]> {
        self.reads_of(self.data)
    }

    /// `bytes` split into reads of the case's sizes. Chunk framing reads at
    /// most its buffer size at once, as every driver does.
    pub fn reads_of<'b>(&self, bytes: &'b [u8]) -> Vec<&'b [u8]> {
        let most = match self.framing {
            Framing::Chunk { buffer_size } => buffer_size,
            _ => usize::MAX,
        };
        if self.sizes == [0; 4] {
            return bytes.chunks(most.max(1)).collect();
        }
        let mut reads = Vec::new();
        let mut rest = bytes;
        for &size in self.sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (read, tail) = rest.split_at(size.min(most).min(rest.len()));
            reads.push(read);
            rest = tail;
        }
        reads
    }

    /// Whether the framing's output depends only on the bytes, not on how
    /// they were split into reads (line and length-prefixed: yes; chunk: each
    /// read is a message, by design).
    pub fn split_invariant(&self) -> bool {
        !matches!(self.framing, Framing::Chunk { .. })
    }
}
