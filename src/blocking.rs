//! Reading a blocking `Read` (a dump tool's pipe, a file) on a dedicated thread.
//!
//! Dump tools write their output in small pieces (4-8 KiB), and object_store reads local files
//! 8 KiB per blocking task. Through the async runtime every piece costs a wake-up and a
//! cross-thread hand-off; a thread that fills large buffers turns a gigabyte into a few
//! thousand messages instead of a few hundred thousand. The channel is bounded, so memory stays
//! at `DEPTH` buffers.

use bytes::{Bytes, BytesMut};
use futures::stream;
use std::io::{self, Read};
use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio_util::io::StreamReader;

const BUFFER: usize = 256 * 1024;
const DEPTH: usize = 4;

/// Stream everything `reader` yields; a read error reaches the consumer as an error.
pub fn spawn_reader<R: Read + Send + 'static>(
    name: &str,
    mut reader: R,
) -> io::Result<impl AsyncRead + Send + Unpin + use<R>> {
    let (tx, mut rx) = mpsc::channel::<io::Result<Bytes>>(DEPTH);
    std::thread::Builder::new()
        .name(format!("read {name}"))
        .spawn(move || {
            loop {
                let mut buf = BytesMut::zeroed(BUFFER);
                let mut filled = 0;
                let mut result = Ok(());
                while filled < BUFFER {
                    match reader.read(&mut buf[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
                buf.truncate(filled);
                let end = filled < BUFFER;
                if filled > 0 && tx.blocking_send(Ok(buf.freeze())).is_err() {
                    return; // the consumer is gone: dropping `reader` closes the pipe
                }
                if let Err(e) = result {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
                if end {
                    return;
                }
            }
        })?;
    let chunks = stream::poll_fn(move |cx| rx.poll_recv(cx));
    Ok(StreamReader::new(chunks))
}
