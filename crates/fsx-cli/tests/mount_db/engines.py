"""Embedded database engines driven on an fsx mount by tests/mount_db.rs.

Usage: python engines.py ENGINE PHASE DIR

ENGINE is duckdb, chdb or kuzu; PHASE is `write` (create the database
under DIR and fill it) or `read` (open what `write` left, after the test
remounted the volume, and query it). Each phase prints one JSON object on
stdout with what the queries returned; the Rust test compares it with the
values it computes itself, so this script asserts nothing.
"""

import json
import os
import sys

DUCK_ROWS = 3_000_000
CH_ROWS = 1_000_000
KUZU_NODES = 1000


def duckdb_phase(phase, d):
    import duckdb

    path = os.path.join(d, "t.duckdb")
    con = duckdb.connect(path)
    if phase == "write":
        con.execute(
            f"CREATE TABLE t AS SELECT range AS i, range % 97 AS k FROM range({DUCK_ROWS})"
        )
        # A second transaction on top of the first: deletes and an update.
        con.execute("DELETE FROM t WHERE k = 13")
        con.execute("UPDATE t SET k = k + 1000 WHERE i % 1000 = 0")
        con.execute("CHECKPOINT")
    count, sum_i, sum_k = con.execute("SELECT count(*), sum(i), sum(k) FROM t").fetchone()
    groups = con.execute("SELECT count(DISTINCT k) FROM t").fetchone()[0]
    check = con.execute("PRAGMA version").fetchone()[0]
    con.close()
    return {
        "version": check,
        "count": int(count),
        "sum_i": int(sum_i),
        "sum_k": int(sum_k),
        "distinct_k": int(groups),
    }


def chdb_phase(phase, d):
    import chdb
    from chdb import session

    s = session.Session(os.path.join(d, "ch"))
    try:
        if phase == "write":
            s.query("CREATE DATABASE IF NOT EXISTS db ENGINE = Atomic")
            s.query(
                "CREATE TABLE db.t (i UInt64, k UInt32, s String) "
                "ENGINE = MergeTree ORDER BY (k, i)"
            )
            # Several inserts: several parts, then merged into one.
            for part in range(4):
                lo = part * (CH_ROWS // 4)
                s.query(
                    f"INSERT INTO db.t SELECT number, number % 97, toString(number) "
                    f"FROM numbers({lo}, {CH_ROWS // 4})"
                )
            s.query("OPTIMIZE TABLE db.t FINAL")
        row = s.query(
            "SELECT count(), sum(i), sum(k), sum(length(s)), uniqExact(k) FROM db.t", "JSONCompact"
        )
        data = _json(row)["data"][0]
        parts = s.query(
            "SELECT count() FROM system.parts WHERE database = 'db' AND table = 't' AND active",
            "JSONCompact",
        )
        nparts = _json(parts)["data"][0][0]
        check = s.query(
            "CHECK TABLE db.t SETTINGS check_query_single_value_result = 1", "JSONCompact"
        )
        check_ok = int(_json(check)["data"][0][0]) == 1
    finally:
        s.close()
    return {
        "version": chdb.__version__,
        "count": int(data[0]),
        "sum_i": int(data[1]),
        "sum_k": int(data[2]),
        "sum_len": int(data[3]),
        "distinct_k": int(data[4]),
        "active_parts": int(nparts),
        "check_ok": check_ok,
    }


def kuzu_phase(phase, d):
    import kuzu

    db = kuzu.Database(os.path.join(d, "graph.kuzu"))
    conn = kuzu.Connection(db)

    def one(q):
        r = conn.execute(q)
        return r.get_next()[0]

    if phase == "write":
        conn.execute("CREATE NODE TABLE P(id INT64, name STRING, PRIMARY KEY(id))")
        conn.execute("CREATE REL TABLE E(FROM P TO P, w INT64)")
        conn.execute(f"UNWIND range(0, {KUZU_NODES - 1}) AS i CREATE (:P {{id: i, name: 'p' + CAST(i AS STRING)}})")
        # Two edges out of each node: i -> i+1 and i -> 7i+3 (mod N).
        conn.execute(
            f"MATCH (a:P), (b:P) WHERE b.id = (a.id + 1) % {KUZU_NODES} "
            "CREATE (a)-[:E {w: 1}]->(b)"
        )
        conn.execute(
            f"MATCH (a:P), (b:P) WHERE b.id = (a.id * 7 + 3) % {KUZU_NODES} "
            "CREATE (a)-[:E {w: 2}]->(b)"
        )
        conn.execute("CHECKPOINT")
    out = {
        "version": kuzu.__version__,
        "nodes": int(one("MATCH (p:P) RETURN count(*)")),
        "edges": int(one("MATCH ()-[e:E]->() RETURN count(*)")),
        "sum_w": int(one("MATCH ()-[e:E]->() RETURN sum(e.w)")),
        "paths2": int(one("MATCH (a:P)-[:E]->(b:P)-[:E]->(c:P) RETURN count(*)")),
        "out_of_5": sorted(
            int(x)
            for x in [
                row[0]
                for row in _rows(conn.execute("MATCH (a:P {id: 5})-[:E]->(b:P) RETURN b.id"))
            ]
        ),
        "into_0": sorted(
            int(x)
            for x in [
                row[0]
                for row in _rows(conn.execute("MATCH (a:P)-[:E]->(b:P {id: 0}) RETURN a.id"))
            ]
        ),
        "name_999": one("MATCH (p:P {id: 999}) RETURN p.name"),
    }
    conn.close()
    db.close()
    return out


def _json(result):
    return json.loads(result.bytes())


def _rows(result):
    while result.has_next():
        yield result.get_next()


def main():
    engine, phase, d = sys.argv[1:4]
    assert phase in ("write", "read"), phase
    out = {"duckdb": duckdb_phase, "chdb": chdb_phase, "kuzu": kuzu_phase}[engine](phase, d)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
