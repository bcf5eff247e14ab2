/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * RuuviTag: passive, from advertisements only. The manufacturer data of company 0x0499
 * (Ruuvi Innovations) starts with a data format byte; formats 5 (RAWv2, 24 bytes) and 3
 * (RAWv1, 14 bytes) carry acceleration and are decoded, formats without acceleration (6 and
 * 0xE1 Ruuvi Air, 0xC5 DF5 without motion, 0x08 encrypted) are recognised and skipped.
 */

#include "profile.h"

#define RUUVI_COMPANY_ID 0x0499

#define RUUVI_FORMAT_3_SIZE 14
#define RUUVI_FORMAT_5_SIZE 24

extern const ProfileDecoder profile_ruuvi_decoder;
extern const Profile profile_ruuvi;

/* data is the value of BlueZ's ManufacturerData key 0x0499, format byte first. Returns 0 with
 * acceleration ax ay az (axes the tag marks as not available are left out) and the fields
 * data_format, temperature (°C), humidity (%), pressure (Pa), battery (mV), and for format 5
 * also tx_power (dBm), movement_counter, measurement_sequence and mac (12 lower-case hex
 * digits). -EOPNOTSUPP for a format without acceleration, -EBADMSG otherwise. */
int profile_ruuvi_decode(const uint8_t *data, size_t size, ProfileFrame *ret);
