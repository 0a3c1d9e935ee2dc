//! `fsx tier` and `fsx cost` as an operator runs them: configure a hot
//! tier, write, watch the replication queue, drain it, demote and promote,
//! scrub, and price the result next to one blob per page.

mod common;

use common::*;

#[test]
fn hot_tier_queue_replicate_demote_promote_scrub_and_cost() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    ok(&["init", s(&vol), "--extent-size", "256K"]);
    let status = json(&["tier", "status", s(&vol), "--json"]);
    assert_eq!(status["tiered"], false);
    ok(&[
        "tier",
        "config",
        s(&vol),
        "--hot",
        "meta",
        "--hot-capacity",
        "64M",
    ]);
    assert!(
        !fsx(&["tier", "config", s(&vol), "--hot", "maybe"])
            .status
            .success(),
        "a bad value is refused"
    );

    let src = dir.path().join("src.bin");
    let data: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    ok(&["file", "put", s(&src), s(&vol), "db"]);

    let status = json(&["tier", "status", s(&vol), "--json"]);
    let n = status["tiers"]["hot"]["extents"].as_u64().unwrap();
    assert_eq!(n, 8, "{status}");
    assert_eq!(status["tiers"]["cold"]["queued"].as_u64().unwrap(), n);
    assert_eq!(
        status["tiers"]["hot"]["capacity"].as_u64().unwrap(),
        64 << 20
    );
    assert_eq!(status["queue"].as_u64().unwrap(), n);
    let text = ok(&["tier", "status", s(&vol)]);
    assert!(text.contains("hot") && text.contains("queue: 8"), "{text}");

    let out = ok(&["tier", "replicate", s(&vol)]);
    assert!(out.contains("copied 8"), "{out}");
    let status = json(&["tier", "status", s(&vol), "--json"]);
    assert_eq!(status["tiers"]["cold"]["extents"].as_u64().unwrap(), n);
    assert_eq!(status["queue"].as_u64().unwrap(), 0);

    ok(&["tier", "demote", s(&vol), "db"]);
    let status = json(&["tier", "status", s(&vol), "--json"]);
    assert_eq!(status["tiers"]["hot"]["extents"].as_u64().unwrap(), 0);
    let back = dir.path().join("back.bin");
    ok(&["file", "get", s(&vol), "db", s(&back)]);
    assert!(std::fs::read(&back).unwrap() == data, "read back from cold");
    ok(&["tier", "promote", s(&vol), "db", "--to", "hot"]);
    let status = json(&["tier", "status", s(&vol), "--json"]);
    assert_eq!(status["tiers"]["hot"]["extents"].as_u64().unwrap(), n);
    assert!(ok(&["tier", "scrub", s(&vol)]).contains("0 bad"));

    let stats = json(&["stats", s(&vol), "--json"]);
    for tier in ["hot", "cold"] {
        assert!(
            stats["tiers"][tier]["puts"].as_u64().unwrap() >= n,
            "{stats}"
        );
    }

    let cost = json(&["cost", s(&vol), "--json"]);
    let ratio = cost["ratio_to_one_blob_per_page"].as_f64().unwrap();
    assert!(ratio > 0.0 && ratio < 1.0, "{cost}");
    assert!(
        cost["one_blob_per_page"]["operations"].as_u64().unwrap() >= 488,
        "{cost}"
    );
    let text = ok(&["cost", s(&vol), "--price", "r2_class_a_million=0"]);
    assert!(text.contains("one-blob-per-page"), "{text}");
    assert!(
        !fsx(&["cost", s(&vol), "--price", "nope=1"])
            .status
            .success()
    );
}
