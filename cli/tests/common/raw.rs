//! A hand-driven connection that speaks the protocol frame by frame, to send what a
//! well-behaved client never would.

use std::io::{Read, Write};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use interprocess::local_socket::traits::Stream as _;
use interprocess::local_socket::{GenericFilePath, GenericNamespaced, Stream, ToFsName, ToNsName};
use ipcq_proto::{AddrKind, BrokerMsg, ClientMsg, Hello};

pub struct Raw {
    pub stream: Stream,
    buf: BytesMut,
}

/// Connects to a broker's address (a socket or a named pipe) as the clients do, without
/// the client library.
pub fn connect_stream(addr: &str) -> std::io::Result<Stream> {
    match ipcq_proto::classify_addr(addr) {
        AddrKind::Path(path) => Stream::connect(path.to_fs_name::<GenericFilePath>()?),
        AddrKind::Namespaced(name) => Stream::connect(name.to_ns_name::<GenericNamespaced>()?),
    }
}

/// Listens at `addr` (a socket or a named pipe) as a broker would, for a test that plays
/// the broker itself.
pub fn listen(addr: &str) -> interprocess::local_socket::Listener {
    use interprocess::local_socket::ListenerOptions;
    let options = match ipcq_proto::classify_addr(addr) {
        AddrKind::Path(path) => {
            ListenerOptions::new().name(path.to_fs_name::<GenericFilePath>().expect("a path"))
        }
        AddrKind::Namespaced(name) => {
            ListenerOptions::new().name(name.to_ns_name::<GenericNamespaced>().expect("a name"))
        }
    };
    options.create_sync().expect("listen")
}

impl Raw {
    /// Connects without a handshake.
    pub fn connect(addr: &str) -> Raw {
        let stream = connect_stream(addr).expect("connect");
        // A test that waits for an answer that never comes fails rather than hangs (its
        // watchdog also sees to that where, as with named pipes, reads have no timeout).
        let raw = Raw {
            stream,
            buf: BytesMut::new(),
        };
        raw.set_timeouts(None, Some(Duration::from_secs(20)));
        raw
    }

    /// Sets the time limits of writes and reads, where the system has them (a named pipe
    /// has none: returns false and leaves it without).
    pub fn set_timeouts(&self, send: Option<Duration>, recv: Option<Duration>) -> bool {
        let results = [
            self.stream.set_send_timeout(send),
            self.stream.set_recv_timeout(recv),
        ];
        for result in results {
            match result {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::Unsupported => return false,
                Err(err) => panic!("setting a timeout: {err}"),
            }
        }
        true
    }

    /// Connects and completes the handshake.
    pub fn handshake(addr: &str) -> Raw {
        let mut raw = Raw::connect(addr);
        raw.send_hello(Hello::new(1 << 24));
        let hello: Hello = raw.read_message();
        hello.check().expect("broker hello");
        raw
    }

    pub fn send_hello(&mut self, hello: Hello) {
        let mut frame = Vec::new();
        ipcq_proto::encode(&hello, 0, 1024, &mut frame).unwrap();
        self.stream.write_all(&frame).unwrap();
    }

    pub fn send(&mut self, msg: &ClientMsg, tail: &[u8]) {
        let mut frame = Vec::new();
        ipcq_proto::encode(msg, tail.len(), 1 << 24, &mut frame).unwrap();
        frame.extend_from_slice(tail);
        self.stream.write_all(&frame).unwrap();
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// The next frame, or `None` when the broker closed the connection.
    pub fn read_frame(&mut self) -> Option<Bytes> {
        loop {
            if let Some(frame) = ipcq_proto::decode_frame(&mut self.buf, 1 << 25).unwrap() {
                return Some(frame);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                // A closed pipe is BrokenPipe on Windows.
                Err(err)
                    if matches!(
                        err.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                    ) =>
                {
                    return None
                }
                Err(err) => panic!("read: {err}"),
            }
        }
    }

    pub fn read_message<T: serde::de::DeserializeOwned>(&mut self) -> T {
        let frame = self
            .read_frame()
            .expect("a frame before the connection closed");
        ipcq_proto::decode::<T>(frame).expect("a valid message").0
    }

    pub fn read_broker_msg(&mut self) -> (BrokerMsg, Bytes) {
        let frame = self
            .read_frame()
            .expect("a frame before the connection closed");
        ipcq_proto::decode::<BrokerMsg>(frame).expect("a valid message")
    }

    /// Reads until the broker closes the connection; returns the messages it sent.
    pub fn read_to_close(&mut self) -> Vec<BrokerMsg> {
        let mut messages = Vec::new();
        while let Some(frame) = self.read_frame() {
            if let Ok((msg, _)) = ipcq_proto::decode::<BrokerMsg>(frame.clone()) {
                messages.push(msg);
            }
        }
        messages
    }
}
