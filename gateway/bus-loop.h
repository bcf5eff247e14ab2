/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * An sd-bus connection driven by the sd-event loop, as sd_bus_attach_event() does it, except
 * that its input is coalesced: when messages keep coming (BlueZ's notifications at hundreds a
 * second), the connection is read at most BUS_LOOP_BURST times per BUS_LOOP_INTERVAL_USEC, each
 * time taking every message that has arrived, rather than once per message. One wakeup then
 * serves a burst, which saves a large part of the cost of a notification (an epoll
 * round trip and a failed read for each). A quiet connection is read at once; a busy one at
 * most BUS_LOOP_INTERVAL_USEC late, which no caller of the D-Bus API notices.
 *
 * sd_bus_get_event() is NULL for such a connection: whoever needs the loop is given it.
 */

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "macro.h"

#define BUS_LOOP_INTERVAL_USEC (UINT64_C(20) * 1000)
#define BUS_LOOP_BURST 1U
/* Messages handled per wakeup at most, so that the loop's other sources keep their turn (about
 * 5 ms of work); with the interval, a ceiling of 51,200 messages a second, far above any BLE load. */
#define BUS_LOOP_BATCH_MAX 1024U

typedef struct BusLoop BusLoop;

int bus_loop_attach(sd_bus *bus, sd_event *event, BusLoop **ret);
/* The connection stays open: flushing and closing it is the caller's. */
BusLoop *bus_loop_detach(BusLoop *l);
DEFINE_TRIVIAL_CLEANUP_FUNC(BusLoop *, bus_loop_detach);
