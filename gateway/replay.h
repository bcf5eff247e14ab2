/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The replay source: plays a recording (gateway/recording.h) into the pipeline on the event
 * loop, at the recorded pace scaled by a speed factor, or as fast as the loop allows (speed 0).
 * It is the stand-in for BLE in demos, benchmarks and tests. It never blocks the loop for long:
 * at most REPLAY_BATCH_MAX readings go out per dispatch, so signals and timers stay prompt.
 */

#include <systemd/sd-event.h>

#include "reading.h"

typedef struct Replay Replay;

typedef struct ReplayCallbacks {
        void (*on_reading)(const Reading *r, void *userdata);
        /* A malformed line was skipped; the replay goes on. */
        void (*on_malformed)(const char *file, unsigned line, const char *why, void *userdata);
        /* The recording ended (error == 0) or could not be read further (negative errno). */
        void (*on_done)(int error, void *userdata);
} ReplayCallbacks;

#define REPLAY_BATCH_MAX 1024U

/* Opens the recording and checks its header; on a bad header returns -EBADMSG with *ret_error
 * (malloc'd) saying why. The first reading goes out from the next loop iteration. */
int replay_new(sd_event *e, const char *path, double speed, const ReplayCallbacks *cb, void *userdata,
               Replay **ret, char **ret_error);
Replay *replay_free(Replay *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(Replay *, replay_free);

const char *replay_path(const Replay *r);
uint64_t replay_readings(const Replay *r);
uint64_t replay_malformed(const Replay *r);
bool replay_is_done(const Replay *r);
