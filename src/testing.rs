//! Helpers for testing code that uses this crate.
//!
//! [`Duplex`] is an in-memory stream: reads come from a script of byte
//! strings, one script entry at most per read, so a test decides exactly how
//! the input is split; writes are collected for inspection.

use std::collections::VecDeque;
use std::io::{self, Read, Write};

/// An in-memory `Read + Write` stream with scripted reads.
#[derive(Clone, Debug, Default)]
pub struct Duplex {
    reads: VecDeque<Vec<u8>>,
    output: Vec<u8>,
}

impl Duplex {
    /// A stream whose input is `input`, handed out as the reader asks.
    pub fn new(input: Vec<u8>) -> Duplex {
        Duplex::from_reads([input])
    }

    /// A stream whose reads return these pieces, in order: one read never
    /// returns bytes of two pieces (a piece larger than the reader's buffer
    /// takes several reads). After the last piece, reads return 0: end of input.
    pub fn from_reads<I: IntoIterator<Item = Vec<u8>>>(reads: I) -> Duplex {
        Duplex { reads: reads.into_iter().filter(|r| !r.is_empty()).collect(), output: Vec::new() }
    }

    /// Everything written so far.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Takes everything written so far.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }
}

impl Read for Duplex {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(front) = self.reads.front_mut() else { return Ok(0) };
        let n = front.len().min(buf.len());
        buf[..n].copy_from_slice(&front[..n]);
        front.drain(..n);
        if front.is_empty() {
            self.reads.pop_front();
        }
        Ok(n)
    }
}

impl Write for Duplex {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
