/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The names of blegate's D-Bus API, shared by the daemon and blegatectl: the bus name, the
 * object paths, the interfaces and errors, versioned by the trailing digit as D-Bus APIs are,
 * and the one limit a caller must know. An incompatible change to an interface means a new
 * name (Gateway2, Device2), never an edit of these. docs/org.blegate.*.md document what lives
 * under them.
 */

#define BUS_NAME "org.blegate.Gateway1"

/* The ObjectManager: GetManagedObjects here lists the gateway, its devices and sinks. */
#define BUS_PATH_ROOT "/org/blegate"
#define BUS_PATH_GATEWAY "/org/blegate/Gateway1"
/* Devices and sinks live below these, their id or name escaped with sd_bus_path_encode(). */
#define BUS_PATH_DEVICES "/org/blegate/Gateway1/device"
#define BUS_PATH_SINKS "/org/blegate/Gateway1/sink"

#define BUS_INTERFACE_GATEWAY "org.blegate.Gateway1"
#define BUS_INTERFACE_DEVICE "org.blegate.Device1"
#define BUS_INTERFACE_SINK "org.blegate.Sink1"

/* The most anomaly events one GetAnomalies() call returns: about 1 MB of reply. */
#define BUS_ANOMALIES_MAX 10000U

/* Errors of our own, for what the standard org.freedesktop.DBus.Error.* names do not say. */
#define BUS_ERROR_INVALID_CONFIGURATION "org.blegate.Error.InvalidConfiguration"
#define BUS_ERROR_STORE_FAILED "org.blegate.Error.StoreFailed"
