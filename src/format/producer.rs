//! Runs a reader that cannot be a `'static` iterator (calamine's cell reader borrows its
//! workbook; serde's visitors push rather than pull) on its own thread, handing records
//! over a bounded channel in batches: memory stays at a few batches, and the reader stops
//! as soon as the consumer drops the records.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::{FormatError, ReadError, Record, Records};

const BATCH: usize = 512;

type Item = Result<Record, ReadError>;

enum Msg {
    /// Header read and columns matched (or why not); sent once, first.
    Ready(Result<(), FormatError>),
    Items(Vec<Item>),
    /// The reader finished; a channel closed without it means the thread died mid-file.
    Done,
}

pub(crate) struct Sink {
    tx: SyncSender<Msg>,
    batch: Vec<Item>,
    ready: bool,
}

impl Sink {
    /// Opening went well: `open` returns and records start flowing.
    pub fn ready(&mut self) -> bool {
        self.ready = true;
        self.tx.send(Msg::Ready(Ok(()))).is_ok()
    }

    /// Queues one item; false when the consumer is gone (stop reading).
    pub fn push(&mut self, item: Item) -> bool {
        self.batch.push(item);
        if self.batch.len() >= BATCH {
            return self.flush();
        }
        true
    }

    fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let items = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.tx.send(Msg::Items(items)).is_ok()
    }
}

/// Spawns `read`, waits until it calls `Sink::ready` (or fails), then yields its records.
pub(crate) fn spawn<F>(name: &str, file: &str, read: F) -> Result<Records, FormatError>
where
    F: FnOnce(&mut Sink) -> Result<(), FormatError> + Send + 'static,
{
    let (tx, rx) = sync_channel::<Msg>(4);
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut sink = Sink { tx, batch: Vec::with_capacity(BATCH), ready: false };
            let outcome = read(&mut sink);
            match outcome {
                Ok(()) if !sink.ready => {
                    let _ = sink.tx.send(Msg::Ready(Ok(())));
                }
                Ok(()) => {}
                Err(e) if !sink.ready => {
                    let _ = sink.tx.send(Msg::Ready(Err(e)));
                    return;
                }
                Err(e) => {
                    sink.batch.push(Err(ReadError::File(e)));
                }
            }
            if sink.flush() {
                let _ = sink.tx.send(Msg::Done);
            }
        })
        .map_err(|source| FormatError::Io { file: file.into(), source })?;
    match rx.recv() {
        Ok(Msg::Ready(Ok(()))) => {}
        Ok(Msg::Ready(Err(e))) => return Err(e),
        Ok(Msg::Items(_) | Msg::Done) | Err(_) => {
            return Err(FormatError::Malformed {
                file: file.into(),
                line: None,
                message: "the reader stopped unexpectedly; this is a bug, please report it".into(),
            });
        }
    }
    Ok(Box::new(Drain { rx, cur: Vec::new().into_iter(), file: file.into(), ended: false }))
}

struct Drain {
    rx: Receiver<Msg>,
    cur: std::vec::IntoIter<Item>,
    file: String,
    ended: bool,
}

impl Iterator for Drain {
    type Item = Item;
    fn next(&mut self) -> Option<Item> {
        loop {
            if let Some(i) = self.cur.next() {
                return Some(i);
            }
            match self.rx.recv() {
                Ok(Msg::Items(v)) => self.cur = v.into_iter(),
                Ok(Msg::Ready(_)) => {}
                Ok(Msg::Done) => {
                    self.ended = true;
                    return None;
                }
                Err(_) if self.ended => return None,
                Err(_) => {
                    self.ended = true;
                    return Some(Err(ReadError::File(FormatError::Malformed {
                        file: self.file.clone(),
                        line: None,
                        message: "the reader stopped in the middle of the file; this is a bug, please report it with the file".into(),
                    })));
                }
            }
        }
    }
}
