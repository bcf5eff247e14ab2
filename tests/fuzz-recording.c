/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzzes the recording reader with whole files: the input goes into a memfd, which is read
 * the way "blegatectl analyze" reads a recording, every line until the end, skipping the
 * malformed ones. Whatever the bytes, it must not crash, leak or stop early.
 */

#include <sys/mman.h>

#include "recording.h"

/* Not assert(): these checks are the point of the fuzzer, in every build. */
#define CHECK(expr)                     \
        do {                            \
                if (!(expr))            \
                        abort();        \
        } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(recording_freep) Recording *r = NULL;
        _cleanup_free_ char *error = NULL;
        _cleanup_close_ int fd = -EBADF;
        unsigned last_line;
        Reading reading;
        int k;

        fd = memfd_create("fuzz-recording", MFD_CLOEXEC);
        if (fd < 0)
                return 0;
        for (size_t done = 0; done < size;) {
                ssize_t n = write(fd, data + done, size - done);
                if (n <= 0)
                        return 0;
                done += n;
        }
        if (lseek(fd, 0, SEEK_SET) < 0)
                return 0;

        k = recording_open_fd(TAKE_FD(fd), "fuzz", &r, &error);
        if (k < 0) {
                CHECK(k != -EBADMSG || error);
                return 0;
        }
        (void) recording_channels(r);
        (void) recording_has_device_id(r);
        (void) recording_has_device_type(r);

        last_line = recording_line(r);
        for (;;) {
                k = recording_next(r, &reading);
                if (k == 0)
                        break;
                /* Every call takes at least one line, so the loop ends. */
                CHECK(recording_line(r) > last_line);
                last_line = recording_line(r);
                if (k == -EBADMSG) {
                        CHECK(recording_error(r)[0] != '\0');
                        continue;
                }
                CHECK(k > 0);
                CHECK(device_id_is_valid(reading.device, strlen(reading.device)));
                CHECK(device_id_is_valid(reading.type, strlen(reading.type)));
                CHECK((reading.channels & ~recording_channels(r)) == 0);
                CHECK(reading.seq == last_line);
                (void) strlen(recording_timestamp(r));
        }

        return 0;
}
