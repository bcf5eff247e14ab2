/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unwrapping sensor counters into store sequence numbers; see sequence.h. */

#include "macro.h"
#include "sequence.h"

uint64_t sequence_next_sensor(Sequence *s, uint16_t sensor_seq, uint64_t now_usec) {
        if (!s->have_sensor) {
                s->have_sensor = true;
                s->last_sensor = sensor_seq;
                s->seq = MAX(s->seq + 1, now_usec);
                return s->seq;
        }
        if (sensor_seq == s->last_sensor)
                return 0;
        /* Wrapping 16-bit difference: always forward, so seq only grows. */
        s->seq += (uint16_t) (sensor_seq - s->last_sensor);
        s->last_sensor = sensor_seq;
        return s->seq;
}

uint64_t sequence_next(Sequence *s, uint64_t now_usec) {
        s->have_sensor = false;
        s->seq = MAX(s->seq + 1, now_usec);
        return s->seq;
}
