/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Sequence numbers from sensor counters: the first is the receipt time, a repeat gives 0, a wrap
 * and a gap keep their size, a stream without a counter follows the clock, and a switch between
 * the two never goes back. */

#include "sequence.h"
#include "tests.h"

static void test_sensor_counter(void) {
        Sequence s = {};

        ASSERT_EQ(sequence_next_sensor(&s, 65530, 1000000), UINT64_C(1000000));
        ASSERT_EQ(sequence_next_sensor(&s, 65530, 1000001), UINT64_C(0));  /* heard twice */
        ASSERT_EQ(sequence_next_sensor(&s, 65531, 1000002), UINT64_C(1000001));
        ASSERT_EQ(sequence_next_sensor(&s, 3, 1000003), UINT64_C(1000009));   /* wrapped: 65532..3 */
        ASSERT_EQ(sequence_next_sensor(&s, 103, 1000004), UINT64_C(1000109)); /* a gap of 100 */
        /* A counter going back is taken as a wrap forward: seq never decreases. */
        ASSERT_EQ(sequence_next_sensor(&s, 102, 1000005), UINT64_C(1000109) + 65535);
}

static void test_without_counter(void) {
        Sequence s = {};

        ASSERT_EQ(sequence_next(&s, 5000), UINT64_C(5000));
        /* The same instant (one loop iteration) still gives distinct numbers. */
        ASSERT_EQ(sequence_next(&s, 5000), UINT64_C(5001));
        ASSERT_EQ(sequence_next(&s, 4000), UINT64_C(5002)); /* the clock stepped back */
        ASSERT_EQ(sequence_next(&s, 9000), UINT64_C(9000));
        /* A counter after numbers from the clock starts above them. */
        ASSERT_EQ(sequence_next_sensor(&s, 7, 8000), UINT64_C(9001));
        ASSERT_EQ(sequence_next_sensor(&s, 8, 8001), UINT64_C(9002));
        ASSERT_EQ(sequence_next(&s, 8002), UINT64_C(9003));
        /* And a counter heard again after that starts afresh, above. */
        ASSERT_EQ(sequence_next_sensor(&s, 8, 8003), UINT64_C(9004));
}

int main(void) {
        test_sensor_counter();
        test_without_counter();
        return 0;
}
