//! Frames on a reliable byte stream (a QUIC stream, a TCP socket): a 4-byte big-endian
//! length, then the frame. A length above the session's limit is refused before any
//! allocation, so a hostile peer cannot make a node reserve gigabytes.

use cardmesh_model::sync::MAX_FRAME_BYTES;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("the peer announced a {0}-byte frame, more than the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("the link closed in the middle of a frame")]
    Truncated,
    #[error("link: {0}")]
    Io(#[from] std::io::Error),
}

pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &[u8]) -> Result<(), FrameError> {
    if frame.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(frame.len()));
    }
    w.write_all(&(frame.len() as u32).to_be_bytes()).await?;
    w.write_all(frame).await?;
    Ok(())
}

/// The next frame, or `None` when the stream ended cleanly between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Vec<u8>>, FrameError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(len));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(e),
    })?;
    Ok(Some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_bad_lengths_are_refused() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"hello").await.unwrap();
        write_frame(&mut wire, b"").await.unwrap();
        let mut r = wire.as_slice();
        assert_eq!(read_frame(&mut r).await.unwrap().unwrap(), b"hello");
        assert_eq!(read_frame(&mut r).await.unwrap().unwrap(), b"");
        assert!(read_frame(&mut r).await.unwrap().is_none());

        let mut huge = (u32::MAX).to_be_bytes().to_vec();
        huge.extend_from_slice(b"xx");
        assert!(matches!(
            read_frame(&mut huge.as_slice()).await,
            Err(FrameError::TooLarge(_))
        ));
        let cut = &wire[..7];
        assert!(matches!(
            read_frame(&mut &cut[..]).await,
            Err(FrameError::Truncated)
        ));
    }
}
