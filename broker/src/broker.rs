//! A broker on a thread of its own, for applications that embed one.

use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::{server, Config, Error};

/// A broker running on its own thread and runtime, stopped by [`Broker::shutdown`] or
/// when the handle is dropped.
///
/// The socket is bound before [`Broker::start`] returns, so clients may connect as soon as
/// they have the handle's [`addr`](Broker::addr).
///
/// # Examples
///
/// ```no_run
/// use ipcq_broker::{Broker, Config};
///
/// let mut broker = Broker::start(Config::new().addr("/tmp/ipcq-embedded.sock"))?;
/// println!("serving at {}", broker.addr());
/// // ... run the application's processes ...
/// broker.shutdown();
/// # Ok::<(), ipcq_broker::Error>(())
/// ```
#[derive(Debug)]
pub struct Broker {
    addr: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Broker {
    /// Binds the configured address and starts serving on a new thread.
    ///
    /// # Errors
    ///
    /// As [`serve`](crate::serve): [`Error::AddrInUse`] when a broker already answers on the
    /// address, [`Error::Listen`] or [`Error::Io`] when the socket or thread cannot be
    /// created, [`Error::InvalidConfig`].
    pub fn start(config: Config) -> Result<Broker, Error> {
        config.validate()?;
        let runtime = if config.worker_threads == 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(config.worker_threads)
                .thread_name("ipcq-broker")
                .enable_all()
                .build()?
        };
        let listener = {
            let _context = runtime.enter();
            server::bind(&config)?
        };
        let addr = config.addr.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("ipcq-broker".into())
            .spawn(move || {
                runtime.block_on(server::run(listener, config, async {
                    let _ = stopped.await;
                }));
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(Broker {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Stops the broker and waits for its thread: parked requests are answered with a
    /// "shutting down" error (clients see `BrokerGone`) and the socket is removed.
    ///
    /// Idempotent; also called on drop. It blocks, so call it outside async code.
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the broker thread panicked");
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.shutdown();
    }
}
