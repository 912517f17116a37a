//! A hand-driven connection that speaks the protocol frame by frame, to send what a
//! well-behaved client never would.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ipcq_proto::{BrokerMsg, ClientMsg, Hello};

pub struct Raw {
    pub stream: UnixStream,
    buf: BytesMut,
}

impl Raw {
    /// Connects without a handshake.
    pub fn connect(addr: &str) -> Raw {
        let stream = UnixStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("read timeout");
        Raw {
            stream,
            buf: BytesMut::new(),
        }
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
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return None,
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
