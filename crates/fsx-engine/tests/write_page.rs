//! `File::write_page` with a page number whose byte offset does not fit in
//! a `u64`: an `InvalidInput` error, never an overflow.

mod common;

use common::TestVolume;
use fsx_engine::{ErrorKind, OpenOptions};

#[tokio::test]
async fn a_page_number_past_the_largest_offset_is_refused() {
    let (_t, v) = TestVolume::new(1 << 20).await;
    let mut f = v
        .volume
        .open_file("db", OpenOptions::create(4096))
        .await
        .unwrap();
    let page = vec![7u8; 4096];
    for page_no in [u64::MAX, u64::MAX / 4096 + 1] {
        let err = f.write_page(page_no, &page).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(
            err.to_string().contains("largest possible file offset"),
            "{err}"
        );
    }
    // Nothing was written, and a normal page still works.
    assert_eq!(f.size(), 0);
    f.write_page(3, &page).await.unwrap();
    assert_eq!(f.size(), 4 * 4096);
}
