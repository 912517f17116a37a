//! Pipe ends for the tokio client.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use bytes::Bytes;
use ipcq_proto::Kind;
use serde::{de::DeserializeOwned, Serialize};

use super::{Client, RawQueue};
use crate::common::{decode, encode};
use crate::pipe::{End, PipeOptions};
use crate::Result;

crate::surface::pipe_surface! {
    [async] [.await],
    raw: {
        /// One end of a pipe of raw bytes, for tokio: [`crate::RawPipeEnd`]'s operations as
        /// `async fn`s, each cancel-safe (see [Cancel safety](super#cancel-safety)).
    },
    typed: {
        /// One end of a pipe carrying `T`s (postcard), for tokio. See [`RawPipeEnd`].
        ///
        /// # Examples
        ///
        /// ```no_run
        /// # async fn demo() -> ipcq_client::Result<()> {
        /// use ipcq_client::End;
        ///
        /// let client = ipcq_client::tokio::Client::connect_default().await?;
        /// let parent = client.pipe::<String>("chat", End::Zero).await?;
        /// parent.send(&"ping".to_string()).await?;
        /// let answer = parent.recv().await?;
        /// # Ok(())
        /// # }
        /// ```
    },
}

impl Client {
    /// Opens end `end` of the duplex pipe `name` (as [`crate::Client::pipe`]).
    ///
    /// # Errors
    ///
    /// As [`crate::Client::pipe`].
    pub async fn pipe<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        end: End,
    ) -> Result<PipeEnd<T>> {
        self.pipe_with(name, end, PipeOptions::default()).await
    }

    /// Opens end `end` of the pipe `name` created with `options`.
    ///
    /// # Errors
    ///
    /// As [`crate::Client::pipe_with`].
    pub async fn pipe_with<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        end: End,
        options: PipeOptions,
    ) -> Result<PipeEnd<T>> {
        self.raw_pipe(name, end, options)
            .await
            .map(PipeEnd::from_raw)
    }

    /// Opens end `end` of the pipe `name` for raw bytes.
    ///
    /// # Errors
    ///
    /// As [`crate::Client::pipe_with`].
    pub async fn raw_pipe(&self, name: &str, end: End, options: PipeOptions) -> Result<RawPipeEnd> {
        let kind = Kind::PipeEnd {
            duplex: options.is_duplex(),
            capacity: options.get_capacity() as u64,
            end: end.index(),
        };
        let link = self.local("pipes")?;
        let handle = link.open(name, kind).await?;
        let queue = RawQueue::local(link.hold(handle), name, options.get_capacity());
        Ok(RawPipeEnd::new(queue, end, options))
    }
}
