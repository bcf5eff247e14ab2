#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The store's promises, seen from outside the daemon: kill -9 at random instants loses no
committed reading and stores none twice; a copy of the database taken at a random instant (a
power cut, approximately) opens and holds every batch committed before it; a full file system
makes the store degraded, not the daemon dead, and writing resumes by itself once space returns;
MaxSize= bounds the file by evicting the oldest readings, counted."""

import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import time

import harness
from harness import TestCase, wait_for

KILLS = 25


def generate(path, rows, devices=8):
    subprocess.run([harness.GENERATE_RECORDING, "--rows", str(rows), "--devices", str(devices), "--output", path],
                   check=True, timeout=120)
    return path


def committed(db):
    """Readings a reader sees: committed ones only (WAL readers never see an open transaction)."""
    if not os.path.exists(db):
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("SELECT count(*) FROM readings").fetchone()[0]
    except sqlite3.OperationalError:
        return 0        # not created yet
    finally:
        con.close()


class Store(TestCase):
    def check_db(self, db, rows_in_file):
        """integrity_check passes, and the readings are exactly the first N lines of the
        recording: a reading's seq is its line number, lines 2.. hold readings."""
        con = sqlite3.connect(db, timeout=10)
        try:
            self.assertEqual(con.execute("PRAGMA integrity_check").fetchall(), [("ok",)])
            n, distinct, lo, hi = con.execute(
                "SELECT count(*), count(DISTINCT device || ':' || seq), min(seq), max(seq) FROM readings").fetchone()
            ids_ok = con.execute("SELECT count(*) = 0 OR max(id) - min(id) + 1 = count(*) FROM readings").fetchone()[0]
        finally:
            con.close()
        self.assertEqual(n, distinct, "a reading is stored twice")
        if n:
            self.assertEqual((lo, hi), (2, n + 1), "the stored readings are not a prefix of the recording")
            self.assertTrue(ids_ok, "gateway ids have a gap")
        self.assertLessEqual(n, rows_in_file)
        return n

    def test_kill_9_loses_nothing_committed(self):
        rows = 700000
        rec = generate(self.path("rec.csv"), rows)
        db = self.path("buffer.db")
        cfg = self.config()
        rnd = random.Random(1)
        before = 0
        for i in range(KILLS):
            d = self.start("--config", cfg, "--replay", rec, "--speed", "0", "--drain-and-exit")
            d.wait_notified("READY=1")
            # Kill while it writes: once it has committed something new (it first skips what it
            # stored before), after a random instant within the next commits.
            wait_for(lambda: committed(db) > before or d.proc.poll() is not None, timeout=60,
                     interval=0.005, what="new commits")
            time.sleep(rnd.uniform(0.0, 0.03))
            seen = committed(db)        # committed before the kill, by definition
            d.proc.kill()
            d.proc.wait(10)
            self.assertEqual(d.proc.returncode, -signal.SIGKILL, f"round {i}: the daemon ended before the kill")
            n = self.check_db(db, rows)
            self.assertGreaterEqual(n, seen, f"round {i}: {seen} readings were committed, {n} survived")
            self.assertGreater(n, before, f"round {i}: no progress")
            before = n
        self.assertLess(before, rows, "the recording was used up before the last kill")

        d = self.start("--config", cfg, "--replay", rec, "--speed", "0", "--drain-and-exit")
        self.assertEqual(d.wait(120), 0, d.output())
        self.assertEqual(self.check_db(db, rows), rows)
        self.assertIn(f"{rows - before} readings committed, {before} duplicates skipped", d.output())

        # The anomaly events too are stored once each: the same ones as an uninterrupted run's.
        clean = self.write("clean.conf", f"[Store]\nPath={self.path('clean.db')}\n")
        d = self.start("--config", clean, "--replay", rec, "--speed", "0", "--drain-and-exit")
        self.assertEqual(d.wait(120), 0, d.output())
        events = []
        for path in (db, self.path("clean.db")):
            con = sqlite3.connect(path)
            events.append(con.execute("SELECT device, channel, start_seq, end_seq, count, peak_z FROM anomalies "
                                      "ORDER BY device, channel, start_seq").fetchall())
            con.close()
        self.assertGreater(len(events[1]), 100)
        self.assertEqual(events[0], events[1])

    def test_copy_at_a_random_instant_opens_with_every_committed_batch(self):
        rows = 300000
        rec = generate(self.path("rec.csv"), rows)
        db = self.path("buffer.db")
        rnd = random.Random(2)
        for i in range(5):
            if os.path.exists(db):
                for suffix in ("", "-wal", "-shm"):
                    if os.path.exists(db + suffix):
                        os.unlink(db + suffix)
            d = self.start("--config", self.config(), "--replay", rec, "--speed", "0", "--drain-and-exit")
            d.wait_notified("READY=1")
            wait_for(lambda: os.path.exists(db + "-wal"), timeout=10, what="the WAL")
            time.sleep(rnd.uniform(0.05, 0.6))
            # A read transaction keeps the WAL from being restarted under the copy, as the file
            # system's ordering would after a real power cut: then db + WAL is a state the
            # disk could have held.
            reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
            reader.execute("BEGIN")
            seen = reader.execute("SELECT count(*) FROM readings").fetchone()[0]
            copy = self.path(f"copy-{i}.db")
            shutil.copyfile(db, copy)
            shutil.copyfile(db + "-wal", copy + "-wal")
            reader.rollback()
            reader.close()
            d.proc.kill()
            d.proc.wait(10)
            n = self.check_db(copy, rows)
            self.assertGreaterEqual(n, seen, f"copy {i}: {seen} readings were committed, the copy has {n}")

    def test_corrupt_database_is_moved_aside(self):
        db = self.path("buffer.db")
        with open(db, "wb") as f:
            f.write(b"SQLite format 3\0" + bytes(range(256)) * 64)
        code, out = self.run_daemon("--config", self.config(), "--replay", harness.SAMPLE_RECORDING, "--speed", "0",
                                    "--drain-and-exit")
        self.assertEqual(code, 0, out)
        self.assertRegex(out, r"Store .*buffer\.db was damaged: .*buffer\.db\.corrupt-\S+")
        moved = [n for n in os.listdir(self.dir) if n.startswith("buffer.db.corrupt-")]
        self.assertEqual(len(moved), 1, os.listdir(self.dir))
        with open(self.path(moved[0]), "rb") as f:
            self.assertTrue(f.read().startswith(b"SQLite format 3\0"))
        self.assertEqual(self.check_db(db, 24000), 24000)

    def test_replaying_again_stores_nothing_twice(self):
        db = self.path("buffer.db")
        counts = []
        for _ in range(2):
            code, out = self.run_daemon("--config", self.config(), "--replay", harness.SAMPLE_RECORDING,
                                        "--speed", "0", "--drain-and-exit")
            self.assertEqual(code, 0, out)
            con = sqlite3.connect(db)
            counts.append(con.execute("SELECT (SELECT count(*) FROM readings), (SELECT count(*) FROM anomalies)")
                          .fetchone())
            con.close()
        self.assertEqual(counts[0], counts[1])
        self.assertEqual(counts[0][0], 24000)
        self.assertGreater(counts[0][1], 100)
        self.assertIn("0 readings committed, 24000 duplicates skipped", out)

    def test_second_daemon_on_the_same_store_refuses(self):
        rec = generate(self.path("rec.csv"), 300000)
        first = self.start("--config", self.config(), "--replay", rec, "--speed", "1")
        first.wait_notified("READY=1")
        code, out = self.run_daemon("--config", self.config(), "--replay", harness.SAMPLE_RECORDING)
        self.assertEqual(code, 1, out)
        self.assertIn("in use by another process", out)
        self.assertIsNone(first.proc.poll())

    def test_max_size_evicts_the_oldest(self):
        rows = 100000
        rec = generate(self.path("rec.csv"), rows)
        db = self.path("buffer.db")
        code, out = self.run_daemon("--config", self.config("MaxSize=2M\n"), "--replay", rec, "--speed", "0",
                                    "--drain-and-exit", timeout=120)
        self.assertEqual(code, 0, out)
        self.assertLessEqual(os.path.getsize(db), 2 * 1024 * 1024)
        m = re.search(r"(\d+) evicted undelivered", out)
        self.assertTrue(m, out)
        evicted = int(m.group(1))
        con = sqlite3.connect(db)
        n, lo, hi = con.execute("SELECT count(*), min(seq), max(seq) FROM readings").fetchone()
        con.close()
        # What is left is the newest readings, without a gap, and every other one was counted.
        self.assertEqual(hi, rows + 1)
        self.assertEqual(hi - lo + 1, n)
        self.assertEqual(n + evicted, rows)
        self.assertGreater(evicted, 0)


class FullDisk(TestCase):
    """A real full file system: a small tmpfs mounted for the test (the suite runs as root, as CI
    does; without the right to mount, this test fails rather than pretending)."""

    def setUp(self):
        super().setUp()
        self.mnt = self.path("mnt")
        os.mkdir(self.mnt)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m,mode=0700", "tmpfs", self.mnt], check=True)

    def tearDown(self):
        for d in self.daemons:
            d.stop()
        subprocess.run(["umount", "-l", self.mnt], check=False)
        super().tearDown()

    def test_full_disk_degrades_and_recovers(self):
        rec = generate(self.path("rec.csv"), 300000)
        ballast = os.path.join(self.mnt, "ballast")
        with open(ballast, "wb") as f:
            f.write(b"\0" * (3 * 1024 * 1024))
        cfg = self.write("full.conf", f"[Store]\nPath={self.mnt}/buffer.db\nMaxSize=64M\n"
                                      "[Gateway]\nStatusInterval=0.2\n")
        d = self.start("--config", cfg, "--replay", rec, "--speed", "0")
        d.wait_log("Store degraded", timeout=60)
        self.assertIsNone(d.proc.poll(), "a full disk must not stop the daemon")
        d.wait_log(", store degraded.")        # it goes on scoring and says so in its status

        os.unlink(ballast)
        d.wait_log("Store recovered", timeout=30)
        self.assertIsNone(d.proc.poll())

        con = sqlite3.connect(f"{self.mnt}/buffer.db", timeout=10)
        self.assertEqual(con.execute("PRAGMA quick_check").fetchall(), [("ok",)])
        con.close()

        d.signal(signal.SIGTERM)
        self.assertEqual(d.wait(30), 0, d.output())
        self.assertRegex(d.output(), r"\d+ dropped while degraded")


if __name__ == "__main__":
    harness.main()
