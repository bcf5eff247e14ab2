#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The daemon as a user and systemd see it: command line, exit codes, configuration errors
with file:line, drop-ins, reload on SIGHUP (good and bad), sd_notify, the watchdog, and the
replay source with --drain-and-exit."""

import csv
import datetime
import io
import re
import signal
import subprocess

import harness
from harness import TestCase, wait_for


def data_rows(path):
    with open(path) as f:
        return sum(1 for line in f if line.strip()) - 1


class CommandLine(TestCase):
    def test_version_and_help(self):
        code, out = self.run_daemon("--version")
        self.assertEqual(code, 0)
        self.assertRegex(out, r"^blegated \d+\.\d+\.\d+\n$")
        code, out = self.run_daemon("--help")
        self.assertEqual(code, 0)
        for option in ("--config", "--replay", "--speed", "--drain-and-exit", "--log-level", "--version"):
            self.assertIn(option, out)

    def test_bad_arguments_exit_1(self):
        for args in (["--bogus"], ["--speed", "fast"], ["--speed", "-1"], ["--log-level", "loud"], ["extra"]):
            code, out = self.run_daemon(*args)
            self.assertEqual(code, 1, args)
            self.assertNotEqual(out.strip(), "", args)

    def test_drain_needs_a_replay(self):
        code, out = self.run_daemon("--config", self.config(), "--drain-and-exit")
        self.assertEqual(code, 1)
        self.assertIn("--drain-and-exit needs a replay", out)


class Configuration(TestCase):
    def test_invalid_config_names_file_and_line(self):
        cfg = self.config("[Detector]\nWindow=100\nTreshold=3\nMinStdDev=zero\n")
        code, out = self.run_daemon("--config", cfg, "--replay", harness.SAMPLE_RECORDING, "--drain-and-exit")
        self.assertEqual(code, 1, out)
        self.assertIn(f"{cfg}:5: Unknown key 'Treshold' in section [Detector]", out)
        self.assertRegex(out, re.escape(cfg) + r":6: .*MinStdDev")
        self.assertIn("refusing to start", out)
        self.assertNotIn("running", out.split("refusing")[1])

    def test_missing_explicit_config(self):
        code, out = self.run_daemon("--config", self.path("nope.conf"))
        self.assertEqual(code, 1)
        self.assertIn("nope.conf", out)

    def test_drop_ins_in_lexical_order(self):
        cfg = self.config("[Detector]\nWindow=50\nThreshold=2.5\n")
        self.write("blegate.conf.d/20-late.conf", "[Detector]\nThreshold=4\n")
        self.write("blegate.conf.d/10-early.conf", "[Detector]\nThreshold=3.5\nMinStdDev=0.01\n")
        self.write("blegate.conf.d/30-ignored.conf.disabled", "[Detector]\nThreshold=9\n")
        code, out = self.run_daemon("--config", cfg, "--replay", harness.SAMPLE_RECORDING, "--speed", "0",
                                    "--drain-and-exit")
        self.assertEqual(code, 0, out)
        self.assertIn("Detector: Window=50 MinSamples=50 Threshold=4 MinStdDev=0.01", out)

    def test_bad_drop_in_is_named(self):
        cfg = self.config()
        dropin = self.write("blegate.conf.d/50-bad.conf", "[Replay]\nSpeed=-3\n")
        code, out = self.run_daemon("--config", cfg)
        self.assertEqual(code, 1)
        self.assertIn(f"{dropin}:2:", out)


class Lifecycle(TestCase):
    def test_reload_good_and_bad(self):
        cfg = self.config("[Detector]\nThreshold=3\n")
        d = self.start("--config", cfg, "--replay", harness.SAMPLE_RECORDING, "--speed", "1")
        d.wait_notified("READY=1")
        d.wait_log("Detector: Window=100 MinSamples=100 Threshold=3 MinStdDev=0.001")

        self.config("[Detector]\nThreshold=3\nWindow=lots\n")
        d.signal(signal.SIGHUP)
        d.wait_log("keeping the running one")
        self.assertIn(f"{cfg}:5:", d.output())
        self.assertIsNone(d.proc.poll(), "a bad reload must not stop the daemon")

        self.config("[Detector]\nThreshold=4.5\n")
        d.signal(signal.SIGHUP)
        d.wait_log("Detector: Window=100 MinSamples=100 Threshold=4.5 MinStdDev=0.001")
        d.wait_log("Configuration reloaded.")
        self.assertTrue(d.notified("RELOADING=1"))

        d.signal(signal.SIGTERM)
        self.assertEqual(d.wait(), 0)
        self.assertTrue(d.notified("STOPPING=1"))

    def test_sigint_stops_cleanly(self):
        d = self.start("--config", self.config(), "--replay", harness.SAMPLE_RECORDING)
        d.wait_notified("READY=1")
        d.signal(signal.SIGINT)
        self.assertEqual(d.wait(), 0)
        self.assertIn("Received Interrupt, stopping.", d.output())

    def test_watchdog_pings(self):
        d = self.start("--config", self.config(), env={"WATCHDOG_USEC": "200000"})
        d.wait_notified("READY=1")
        wait_for(lambda: sum(m.split("\n").count("WATCHDOG=1") for m in d.received()) >= 3, timeout=10,
                 what="three WATCHDOG=1 pings")

    def test_status_lines(self):
        d = self.start("--config", self.config("[Gateway]\nStatusInterval=0.2\n"),
                       "--replay", harness.SAMPLE_RECORDING, "--speed", "1")
        wait_for(lambda: len(re.findall(r"Status: \d+ readings \(\d+/s\)", d.output())) >= 3, timeout=10,
                 what="three status lines")
        rates = [int(r) for r in re.findall(r"Status: \d+ readings \((\d+)/s\)", d.output())]
        # 4 devices at 100 Hz replayed at recorded pace: about 400 readings per second.
        self.assertTrue(any(300 <= r <= 500 for r in rates[1:]), rates)


class Replay(TestCase):
    def test_drain_and_exit_on_sample(self):
        d = self.start("--config", self.config(), "--replay", harness.SAMPLE_RECORDING, "--speed", "0",
                       "--drain-and-exit")
        self.assertEqual(d.wait(), 0, d.output())
        rows = data_rows(harness.SAMPLE_RECORDING)
        self.assertIn(f"finished: {rows} readings, 0 malformed lines skipped.", d.output())
        self.assertTrue(d.notified("READY=1"))
        self.assertTrue(d.notified("STOPPING=1"))

    def test_malformed_lines_are_reported_and_skipped(self):
        rec = self.write("bad.csv",
                         "timestamp,deviceId,ax,ay\n"
                         "1515542400000,dev1,0.1,0.2\n"
                         "1515542400010,dev1,abc,0.2\n"
                         "1515542400020,dev1,0.1\n"
                         "2018-01-10T00:00:00.030Z,dev1,0.3,\n"
                         "2018-01-10T00:00:00.040+05:00,dev1,0.3,0.1\n"
                         "1515542400050,bad id!,0.1,0.2\n"
                         "1515542400060,dev1,,\n")
        code, out = self.run_daemon("--config", self.config(), "--replay", rec, "--speed", "0", "--drain-and-exit")
        self.assertEqual(code, 0, out)
        for line in (3, 4, 6, 7):
            self.assertRegex(out, re.escape(f"{rec}:{line}: ") + r".+, skipping line\.")
        self.assertIn("finished: 3 readings, 4 malformed lines skipped.", out)

    def test_bad_header_refuses(self):
        rec = self.write("noheader.csv", "time,ax\n1,2\n")
        code, out = self.run_daemon("--config", self.config(), "--replay", rec, "--drain-and-exit")
        self.assertEqual(code, 1)
        self.assertIn(rec, out)
        self.assertIn("timestamp", out)

    def test_missing_recording_refuses(self):
        code, out = self.run_daemon("--config", self.config(), "--replay", self.path("none.csv"))
        self.assertEqual(code, 1)
        self.assertIn("none.csv", out)
        self.assertIn("No such file", out)


EVENT = re.compile(r"Anomaly on (\S+) (\S\S) from (\S+) to (\S+) \((\d+) readings?\): peak z=(\S+) ")


def epoch_ms(iso):
    t = datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    return round(t.timestamp() * 1000)


class Detection(TestCase):
    def events(self, threshold):
        code, out = self.run_daemon("--config", self.config(f"[Detector]\nThreshold={threshold}\n"),
                                    "--replay", harness.SAMPLE_RECORDING, "--speed", "0", "--drain-and-exit")
        self.assertEqual(code, 0, out)
        events = [(dev, ch, epoch_ms(start), epoch_ms(end), int(n), float(z))
                  for dev, ch, start, end, n, z in EVENT.findall(out)]
        self.assertIn(f"{len(events)} anomaly events, ", out)
        return events

    def test_injected_anomalies_are_found(self):
        events = self.events(5)
        with open(harness.SAMPLE_ANOMALIES) as f:
            injected = list(csv.DictReader(f))
        self.assertGreater(len(injected), 10)
        for a in injected:
            start, end = int(a["start_ms"]), int(a["end_ms"])
            hits = [e for e in events if e[0] == a["deviceId"] and e[1] == a["channel"] and start <= e[2] <= end]
            self.assertTrue(hits, f"no event for injected {a}")
            self.assertTrue(all(abs(e[5]) >= 5 for e in hits))

    def test_events_merge_what_analyze_flags(self):
        """The daemon's events are the runs of consecutive flagged values that the offline
        analysis of the same recording finds, each logged once."""
        events = self.events(3)
        p = subprocess.run([harness.BLEGATECTL, "analyze", harness.SAMPLE_RECORDING], capture_output=True,
                           text=True, timeout=60, check=True)
        runs, open_runs = [], {}
        for row in csv.DictReader(io.StringIO(p.stdout)):
            key = (row["deviceId"], row["channel"])
            if row["anomaly"] == "1":
                t = int(row["timestamp"])
                if key in open_runs:
                    open_runs[key][3] = t
                    open_runs[key][4] += 1
                else:
                    open_runs[key] = [key[0], key[1], t, t, 1]
            elif key in open_runs:
                runs.append(tuple(open_runs.pop(key)))
        runs.extend(tuple(r) for r in open_runs.values())
        self.assertGreater(len(runs), 100)
        self.assertEqual(sorted(e[:5] for e in events), sorted(runs))


if __name__ == "__main__":
    harness.main()
