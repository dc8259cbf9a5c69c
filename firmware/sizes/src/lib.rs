//! What every program of this crate shares: the heap, the panic handler, the executor and a
//! scripted transport that plays the server.
#![no_std]

use core::hint::black_box;

pub use cortex_m_semihosting::{debug, hprintln};
pub use embassy_futures::block_on;
pub use embedded_alloc::LlffHeap as Heap;
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use panic_semihosting as _;

/// The server's bytes for the program (MQTT 5.0): CONNACK; SUBACK for Packet Identifier 1
/// (granted QoS 1); PUBACK; a QoS 0 PUBLISH on `fw/in` ("hello"). The SUBACK's and the
/// PUBACK's Packet Identifiers are replaced by the client's (see [`Scripted`]).
pub static SERVER: &[u8] = &[
    0x20, 0x03, 0x00, 0x00, 0x00, // CONNACK
    0x90, 0x04, 0x00, 0x01, 0x00, 0x01, // SUBACK
    0x40, 0x02, 0x00, 0x02, // PUBACK
    0x30, 0x0D, 0x00, 0x05, b'f', b'w', b'/', b'i', b'n', 0x00, b'h', b'e', b'l', b'l', b'o',
];

/// A transport that reads `script` (then nothing more, ever) and takes every write.
pub struct Scripted {
    script: &'static [u8],
    at: usize,
    /// Bytes the client wrote.
    pub written: usize,
    /// The Packet Identifiers of the client's last SUBSCRIBE and QoS 1 PUBLISH: the scripted
    /// SUBACK and PUBACK answer them (clients number their packets differently).
    subscribe_id: [u8; 2],
    publish_id: [u8; 2],
    /// The client's packet being written.
    pending: [u8; 128],
    pending_len: usize,
}

impl Scripted {
    pub fn new(script: &'static [u8]) -> Self {
        Self {
            // (Opaque to the optimiser: the program cannot be folded away.)
            script: black_box(script),
            at: 0,
            written: 0,
            subscribe_id: [0, 1],
            publish_id: [0, 1],
            pending: [0; 128],
            pending_len: 0,
        }
    }
}

impl ErrorType for Scripted {
    type Error = ErrorKind;
}

impl Read for Scripted {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let rest = self.script.get(self.at..).unwrap_or_default();
        if rest.is_empty() {
            // The script is over: a server that says nothing more.
            core::future::pending::<()>().await;
        }
        // One packet per read (a server answers what it was sent; the fixed header's one-byte
        // Remaining Length is enough for this script).
        let packet = rest.get(1).map_or(rest.len(), |len| 2 + usize::from(*len));
        let n = packet.min(rest.len()).min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        // The Packet Identifier of a SUBACK or PUBACK (bytes 2 and 3 of the packet) is the
        // client's, however the client splits its reads.
        let (mut start, mut kind) = (0, 0);
        while start < self.script.len() {
            let len = 2 + usize::from(self.script[start + 1]);
            if self.at < start + len {
                kind = self.script[start];
                break;
            }
            start += len;
        }
        let id = match kind {
            0x90 => Some(self.subscribe_id),
            0x40 => Some(self.publish_id),
            _ => None,
        };
        if let Some(id) = id {
            for (j, byte) in buf[..n].iter_mut().enumerate() {
                match self.at + j - start {
                    2 => *byte = id[0],
                    3 => *byte = id[1],
                    _ => {}
                }
            }
        }
        self.at += n;
        Ok(n)
    }
}

impl Write for Scripted {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        // The client's packets, in whatever pieces it writes them (each under 128 bytes here,
        // with a one-byte Remaining Length).
        for &byte in buf {
            if self.pending_len < self.pending.len() {
                self.pending[self.pending_len] = byte;
                self.pending_len += 1;
            }
            let p = &self.pending[..self.pending_len];
            if p.len() >= 2 && p.len() == 2 + usize::from(p[1]) {
                match p[0] {
                    0x82 => self.subscribe_id = [p[2], p[3]],
                    0x32 => {
                        let topic = usize::from(p[2]) << 8 | usize::from(p[3]);
                        if let Some(id) = p.get(4 + topic..6 + topic) {
                            self.publish_id = [id[0], id[1]];
                        }
                    }
                    _ => {}
                }
                self.pending_len = 0;
            }
        }
        self.written += black_box(buf.len());
        Ok(buf.len())
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

/// A clock that stands still, for mqtt-embedded (the programs end long before any deadline).
#[cfg(feature = "ours")]
pub struct Still;

#[cfg(feature = "ours")]
impl mqtt_embedded::Clock for Still {
    fn now(&self) -> mqtt_embedded::Timestamp {
        mqtt_embedded::Timestamp::from_secs(black_box(1_700_000_000))
    }
    async fn sleep_until(&self, _deadline: mqtt_embedded::Timestamp) {
        core::future::pending::<()>().await;
    }
}

/// Ends the program: exit code 0 when `ok`.
pub fn exit(ok: bool) -> ! {
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    #[allow(clippy::empty_loop)]
    loop {}
}

/// Sets up the heap (once, first thing).
#[macro_export]
macro_rules! init_heap {
    ($heap:ident) => {
        // SAFETY: called once, first thing, before anything allocates.
        unsafe {
            embedded_alloc::init!($heap, 64 * 1024);
        }
    };
}
