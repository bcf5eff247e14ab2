/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The a{sv} walk of bus-properties.h: enter the array, then each dict entry, read the name, let
 * the caller take the variant or skip it, leave the entry; leave the array. And error replies
 * made printable.
 */

#include <stdio.h>

#include "bus-properties.h"

int bus_message_foreach_property(sd_bus_message *m, BusPropertyFunc f, void *userdata) {
        int k;

        k = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (k < 0)
                return k;

        while ((k = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *name;

                k = sd_bus_message_read_basic(m, 's', &name);
                if (k < 0)
                        return k;
                k = f(m, name, userdata);
                if (k == 0)
                        k = sd_bus_message_skip(m, "v");
                if (k < 0)
                        return k;
                k = sd_bus_message_exit_container(m);
                if (k < 0)
                        return k;
        }
        if (k < 0)
                return k;

        k = sd_bus_message_exit_container(m);
        return k < 0 ? k : 0;
}

const char *bus_error_format(const char *what, const sd_bus_error *e, char *buf, size_t size) {
        size_t n;

        n = (size_t) snprintf(buf, size, "%s%s%s: ", what ?: "", what ? ": " : "", e->name ?: "?");
        for (const char *p = e->message ?: ""; *p && *p != '\n' && n + 1 < size; p++)
                buf[n++] = *p >= ' ' && *p < 0x7f ? *p : '?';
        if (n < size)
                buf[n] = '\0';
        return buf;
}
