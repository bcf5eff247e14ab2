/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Pacing a recording onto the loop. The first reading's timestamp is anchored to the monotonic
 * clock when the replay starts; a reading recorded t µs later is due t / speed µs after that
 * anchor. Readings recorded out of order are simply due at once. One time source drives
 * everything: at speed 0 it is armed for "now" after every batch, which lets the loop run its
 * other sources between batches.
 */

#include <math.h>
#include <stdlib.h>
#include <time.h>

#include "macro.h"
#include "recording.h"
#include "replay.h"

struct Replay {
        Recording *recording;
        sd_event_source *timer;
        double speed;
        ReplayCallbacks cb;
        void *userdata;

        Reading next;        /* read ahead: the reading waiting for its due time */
        bool have_next;
        bool done;
        bool anchored;
        uint64_t anchor_mono_usec;
        uint64_t anchor_time_usec;

        uint64_t n_readings;
        uint64_t n_malformed;
};

static uint64_t now_mono_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * UINT64_C(1000000) + (uint64_t) ts.tv_nsec / 1000;
}

static uint64_t replay_due_usec(Replay *r) {
        double offset;

        if (r->speed <= 0)
                return 0;
        if (!r->anchored) {
                r->anchor_mono_usec = now_mono_usec();
                r->anchor_time_usec = r->next.time_usec;
                r->anchored = true;
        }
        if (r->next.time_usec <= r->anchor_time_usec)
                return r->anchor_mono_usec;

        offset = (double) (r->next.time_usec - r->anchor_time_usec) / r->speed;
        if (offset >= (double) (UINT64_MAX - r->anchor_mono_usec))
                return UINT64_MAX - 1;
        return r->anchor_mono_usec + (uint64_t) offset;
}

/* Reads ahead to the next good reading. Returns 1 when one is waiting, 0 at the end. */
static int replay_fill(Replay *r) {
        int k;

        while (!r->have_next) {
                k = recording_next(r->recording, &r->next);
                if (k == -EBADMSG) {
                        r->n_malformed++;
                        if (r->cb.on_malformed)
                                r->cb.on_malformed(recording_name(r->recording), recording_line(r->recording),
                                                   recording_error(r->recording), r->userdata);
                        continue;
                }
                if (k < 0)
                        return k;
                if (k == 0)
                        return 0;
                r->have_next = true;
        }
        return 1;
}

static void replay_finish(Replay *r, int error) {
        r->done = true;
        (void) sd_event_source_set_enabled(r->timer, SD_EVENT_OFF);
        if (r->cb.on_done)
                r->cb.on_done(error, r->userdata);
}

static int replay_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Replay *r = userdata;
        uint64_t now = now_mono_usec(), due;
        int k;

        for (unsigned n = 0; n < REPLAY_BATCH_MAX; n++) {
                k = replay_fill(r);
                if (k <= 0) {
                        replay_finish(r, k);
                        return 0;
                }

                due = replay_due_usec(r);
                if (due > now)
                        break;

                r->have_next = false;
                r->n_readings++;
                r->cb.on_reading(&r->next, r->userdata);
                if (r->done) /* the callback may have ended the replay */
                        return 0;
        }

        /* Either the next reading is due later or the batch is full: come back, after the loop
         * has had its turn. */
        due = r->have_next ? replay_due_usec(r) : 0;
        (void) sd_event_source_set_time(s, MAX(due, (uint64_t) 1));
        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
}

int replay_new(sd_event *e, const char *path, double speed, const ReplayCallbacks *cb, void *userdata,
               Replay **ret, char **ret_error) {
        _cleanup_(replay_freep) Replay *r = NULL;
        int k;

        assert(e);
        assert(path);
        assert(cb && cb->on_reading);
        assert(ret);

        if (!isfinite(speed) || speed < 0)
                return -EINVAL;

        r = new0(Replay, 1);
        if (!r)
                return -ENOMEM;
        *r = (Replay) {
                .speed = speed,
                .cb = *cb,
                .userdata = userdata,
        };

        k = recording_open(path, &r->recording, ret_error);
        if (k < 0)
                return k;

        /* Due at once: the first batch goes out on the first loop iteration. */
        k = sd_event_add_time(e, &r->timer, CLOCK_MONOTONIC, 1, 0, replay_on_timer, r);
        if (k < 0)
                return k;
        (void) sd_event_source_set_description(r->timer, "replay");

        *ret = TAKE_PTR(r);
        return 0;
}

Replay *replay_free(Replay *r) {
        if (!r)
                return NULL;
        sd_event_source_disable_unref(r->timer);
        recording_free(r->recording);
        return mfree(r);
}

const char *replay_path(const Replay *r) {
        return recording_name(r->recording);
}

uint64_t replay_readings(const Replay *r) {
        return r->n_readings;
}

uint64_t replay_malformed(const Replay *r) {
        return r->n_malformed;
}

bool replay_is_done(const Replay *r) {
        return r->done;
}
