//! The socket wrapper of every client connection: a read waiting past the deadline that
//! [`Activity`] names, or a write blocked for longer than the write timeout, fails with
//! `TimedOut`, which ends the connection (HTTP and upgraded WebSocket alike). It also holds
//! the connection's place under the caps until the socket is dropped.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep_until, Instant, Sleep};

use super::activity::{Activity, Timeouts};
use super::admission::Permit;

/// A socket with read and write deadlines.
pub struct TimedIo<T> {
    inner: T,
    activity: Arc<Activity>,
    timeouts: Timeouts,
    read_timer: Pin<Box<Sleep>>,
    read_deadline: Option<Instant>,
    write_timer: Pin<Box<Sleep>>,
    write_blocked: bool,
    _permit: Option<Permit>,
}

impl<T> TimedIo<T> {
    /// Wraps `inner`; `permit` (the connection's place under the caps) is held until drop.
    pub fn new(
        inner: T,
        activity: Arc<Activity>,
        timeouts: Timeouts,
        permit: Option<Permit>,
    ) -> Self {
        let now = Instant::now();
        Self {
            inner,
            activity,
            timeouts,
            read_timer: Box::pin(sleep_until(now)),
            read_deadline: None,
            write_timer: Box::pin(sleep_until(now)),
            write_blocked: false,
            _permit: permit,
        }
    }

    /// Waits for the read deadline, if one applies, after the socket said `Pending`.
    fn poll_read_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(deadline) = self.activity.read_deadline(&self.timeouts, cx.waker()) else {
            return Poll::Pending;
        };
        if self.read_deadline != Some(deadline.at()) {
            self.read_deadline = Some(deadline.at());
            self.read_timer.as_mut().reset(deadline.at());
        }
        match self.read_timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                deadline.what(),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Runs one write-side operation under the write timeout.
    fn poll_write_op<R>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut T>, &mut Context<'_>) -> Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>>
    where
        T: Unpin,
    {
        match op(Pin::new(&mut self.inner), cx) {
            Poll::Ready(result) => {
                self.write_blocked = false;
                Poll::Ready(result)
            }
            Poll::Pending => {
                if !self.write_blocked {
                    self.write_blocked = true;
                    let deadline = Instant::now() + self.timeouts.write;
                    self.write_timer.as_mut().reset(deadline);
                }
                match self.write_timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client did not read within write_timeout_secs",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.activity.bytes_read();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.poll_read_deadline(cx),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_op(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_op(cx, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_write_op(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut()
            .poll_write_op(cx, |io, cx| io.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    const T: Timeouts = Timeouts {
        header_read: Duration::from_millis(200),
        keepalive_idle: Duration::from_millis(500),
        write: Duration::from_millis(300),
    };

    #[tokio::test(start_paused = true)]
    async fn a_half_sent_head_times_out_and_a_busy_connection_does_not() {
        let (mut client, server) = duplex(1024);
        let activity = Activity::new();
        let mut io = TimedIo::new(server, Arc::clone(&activity), T, None);
        client.write_all(b"GET / HT").await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(io.read(&mut buf).await.unwrap(), 8);
        let started = Instant::now();
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() <= T.header_read);

        let busy = activity.begin();
        let read = tokio::time::timeout(Duration::from_secs(30), io.read(&mut buf)).await;
        assert!(read.is_err(), "no read deadline while a request is busy");
        drop(busy);
        let idle = Instant::now();
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(idle.elapsed() >= T.keepalive_idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_client_never_reads_times_out() {
        let (_client, server) = duplex(64);
        let busy_activity = Activity::new();
        let _busy = busy_activity.begin();
        let mut io = TimedIo::new(server, busy_activity, T, None);
        let started = Instant::now();
        let err = io.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= T.write);
    }
}
