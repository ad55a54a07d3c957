//! A TCP proxy on 127.0.0.1 that forwards to a server and can cut a
//! connection after a given number of bytes, to test what a dropped
//! connection in the middle of a request or a response leaves behind.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Which way the counted bytes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to server (the request).
    Upstream,
    /// Server to client (the response).
    Downstream,
}

const NEVER: u64 = u64::MAX;

/// A running proxy. Dropping it stops accepting connections.
pub struct FaultProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    cut_upstream: Arc<AtomicU64>,
    cut_downstream: Arc<AtomicU64>,
    cuts: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let cut_upstream = Arc::new(AtomicU64::new(NEVER));
        let cut_downstream = Arc::new(AtomicU64::new(NEVER));
        let cuts = Arc::new(AtomicUsize::new(0));
        let (up, down, count) = (cut_upstream.clone(), cut_downstream.clone(), cuts.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                // A cut applies to the next connection only.
                let limit_up = up.swap(NEVER, Ordering::SeqCst);
                let limit_down = down.swap(NEVER, Ordering::SeqCst);
                let count = count.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let cut = relay(client, server, limit_up, limit_down).await;
                        if cut {
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        FaultProxy {
            addr,
            cut_upstream,
            cut_downstream,
            cuts,
            task,
        }
    }

    /// `http://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cuts the next connection after `bytes` bytes have flowed in `direction`.
    pub fn cut_next_after(&self, direction: Direction, bytes: u64) {
        match direction {
            Direction::Upstream => self.cut_upstream.store(bytes, Ordering::SeqCst),
            Direction::Downstream => self.cut_downstream.store(bytes, Ordering::SeqCst),
        }
    }

    /// How many connections have been cut so far.
    pub fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies both ways until either side closes or a limit is reached; returns
/// whether the connection was cut.
async fn relay(client: TcpStream, server: TcpStream, limit_up: u64, limit_down: u64) -> bool {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async {
        let mut sent = 0u64;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            };
            let allowed = (limit_up - sent).min(n as u64) as usize;
            if server_write.write_all(&buf[..allowed]).await.is_err() {
                return false;
            }
            sent += allowed as u64;
            if sent >= limit_up {
                return true;
            }
        }
    };
    let downstream = async {
        let mut sent = 0u64;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            };
            let allowed = (limit_down - sent).min(n as u64) as usize;
            if client_write.write_all(&buf[..allowed]).await.is_err() {
                return false;
            }
            sent += allowed as u64;
            if sent >= limit_down {
                return true;
            }
        }
    };
    // Whichever direction ends first ends the connection: both halves drop.
    tokio::select! {
        cut = upstream => cut,
        cut = downstream => cut,
    }
}
