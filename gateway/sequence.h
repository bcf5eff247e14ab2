/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A device's reading sequence: the increasing per-device number the store keys readings by
 * (and skips when it is not above the last one it holds), made from what the sensor gives. A
 * sensor with its own 16-bit wrapping counter (Ruuvi's measurement sequence, a phone's sample
 * counter) has it unwrapped into a 64-bit number, so a sample heard twice is recognised and a
 * gap keeps its size; one without gets the next number. Either way the first number of a
 * device in this process is its receipt time in µs, which lies above anything an earlier run
 * stored for it: that run counted up from its own start, by far less than one per µs.
 */

#include <stdbool.h>
#include <stdint.h>

typedef struct Sequence {
        bool have_sensor;        /* last_sensor holds the sensor's counter of seq */
        uint16_t last_sensor;
        uint64_t seq;            /* the last number given; 0 before the first */
} Sequence;

/* The seq of a sample carrying the sensor's counter, or 0 when it repeats the last one. */
uint64_t sequence_next_sensor(Sequence *s, uint16_t sensor_seq, uint64_t now_usec);
/* The seq of a sample without a counter of its own. */
uint64_t sequence_next(Sequence *s, uint64_t now_usec);
