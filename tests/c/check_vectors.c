/*
 * Checks include/relentless_signal.h against tests/vectors/signal_v1.toml.
 *
 * Build and run (tests/unit/test_signal_c_header.py does this with the system gcc):
 *   gcc -std=c99 -Wall -Wextra -Werror -pedantic -Iinclude tests/c/check_vectors.c -o check
 *   ./check tests/vectors/signal_v1.toml
 * Prints one line per failure and "N passed, M failed"; exits non-zero on any failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relentless_signal.h"

#define MAX_BYTES 512

typedef struct entry {
    char section[32];
    char name[64];
    char error[32];
    unsigned char bytes[MAX_BYTES];
    size_t nbytes;
    unsigned long long v[32];
    char keys[32][32];
    int nkeys;
} entry;

static int passed, failed;

static void fail(const entry *e, const char *what) {
    printf("FAIL %s/%s: %s\n", e->section, e->name, what);
    failed++;
}

static int get(const entry *e, const char *key, unsigned long long *out) {
    int i;
    for (i = 0; i < e->nkeys; i++) {
        if (strcmp(e->keys[i], key) == 0) {
            *out = e->v[i];
            return 1;
        }
    }
    return 0;
}

static unsigned long long need(const entry *e, const char *key) {
    unsigned long long v = 0;
    if (!get(e, key, &v)) {
        fail(e, key);
    }
    return v;
}

static float bits_to_float(unsigned long long bits) {
    uint32_t b = (uint32_t)bits;
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static uint32_t float_bits(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

static void check_valid(const entry *e) {
    rf_signal want, got;
    uint8_t again[RF_SIGNAL_SIZE];
    if (e->nbytes != RF_SIGNAL_SIZE) {
        fail(e, "hex is not 64 bytes");
        return;
    }
    want.action = (uint8_t)need(e, "action");
    want.symbol_id = (uint32_t)need(e, "symbol_id");
    want.sequence = need(e, "sequence");
    want.event_ts_ns = need(e, "event_ts_ns");
    want.emit_ts_ns = need(e, "emit_ts_ns");
    want.confidence = bits_to_float(need(e, "confidence_bits"));
    want.price_target = bits_to_float(need(e, "price_target_bits"));
    want.stop_loss = bits_to_float(need(e, "stop_loss_bits"));
    want.position_size = bits_to_float(need(e, "position_size_bits"));
    want.risk_score = (uint8_t)need(e, "risk_score");
    want.urgency = (uint8_t)need(e, "urgency");
    want.strategy_id = (uint16_t)need(e, "strategy_id");
    want.model_version = (uint16_t)need(e, "model_version");
    want.flags = (uint16_t)need(e, "flags");
    want.context_version = (uint32_t)need(e, "context_version");

    if (rf_signal_validate(e->bytes) != RF_SIGNAL_OK) {
        fail(e, "valid vector does not validate");
        return;
    }
    rf_signal_decode(e->bytes, &got);
    if (got.action != want.action || got.symbol_id != want.symbol_id ||
        got.sequence != want.sequence || got.event_ts_ns != want.event_ts_ns ||
        got.emit_ts_ns != want.emit_ts_ns ||
        float_bits(got.confidence) != float_bits(want.confidence) ||
        float_bits(got.price_target) != float_bits(want.price_target) ||
        float_bits(got.stop_loss) != float_bits(want.stop_loss) ||
        float_bits(got.position_size) != float_bits(want.position_size) ||
        got.risk_score != want.risk_score || got.urgency != want.urgency ||
        got.strategy_id != want.strategy_id || got.model_version != want.model_version ||
        got.flags != want.flags || got.context_version != want.context_version) {
        fail(e, "decoded fields differ");
        return;
    }
    rf_signal_encode(&want, again);
    if (memcmp(again, e->bytes, RF_SIGNAL_SIZE) != 0) {
        fail(e, "encoded bytes differ");
        return;
    }
    passed++;
}

static void check_invalid(const entry *e) {
    size_t off = (size_t)-1;
    rf_signal_status want, got;
    if (strcmp(e->error, "magic") == 0) want = RF_SIGNAL_BAD_MAGIC;
    else if (strcmp(e->error, "version") == 0) want = RF_SIGNAL_BAD_VERSION;
    else if (strcmp(e->error, "crc") == 0) want = RF_SIGNAL_BAD_CRC;
    else if (strcmp(e->error, "action") == 0) want = RF_SIGNAL_BAD_ACTION;
    else if (strcmp(e->error, "length") == 0) want = RF_SIGNAL_BAD_LENGTH;
    else {
        fail(e, "unknown error kind");
        return;
    }
    got = rf_signal_validate_buffer(e->bytes, e->nbytes, &off);
    if (got != want) {
        fail(e, "wrong status");
        return;
    }
    if ((unsigned long long)off != need(e, "offset")) {
        fail(e, "wrong offset");
        return;
    }
    passed++;
}

static void finish(entry *e) {
    if (e->section[0] == '\0') return;
    if (strcmp(e->section, "valid") == 0) check_valid(e);
    else if (strcmp(e->section, "invalid") == 0) check_invalid(e);
    else fail(e, "unknown section");
}

/* Copies at most cap - 1 bytes of src and terminates dst. */
static void copy_text(char *dst, size_t cap, const char *src) {
    size_t i;
    for (i = 0; i + 1 < cap && src[i] != '\0'; i++) dst[i] = src[i];
    dst[i] = '\0';
}

static int unhex(const char *s, unsigned char *out, size_t *n) {
    size_t len = strlen(s), i;
    if (len % 2 != 0 || len / 2 > MAX_BYTES) return 0;
    for (i = 0; i < len / 2; i++) {
        unsigned int b;
        if (sscanf(s + 2 * i, "%2x", &b) != 1) return 0;
        out[i] = (unsigned char)b;
    }
    *n = len / 2;
    return 1;
}

int main(int argc, char **argv) {
    FILE *f;
    char line[1024];
    entry *e = calloc(1, sizeof *e);
    if (argc != 2 || e == NULL) {
        fprintf(stderr, "usage: %s tests/vectors/signal_v1.toml\n", argv[0]);
        return 2;
    }
    if (rf_crc32c("123456789", 9) != 0xE3069283u) {
        printf("FAIL crc32c check value\n");
        failed++;
    } else {
        passed++;
    }
    f = fopen(argv[1], "r");
    if (f == NULL) {
        perror(argv[1]);
        return 2;
    }
    while (fgets(line, sizeof line, f)) {
        char key[64], val[1024];
        char *hash;
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0') continue;
        if (strncmp(line, "[[", 2) == 0) {
            finish(e);
            memset(e, 0, sizeof *e);
            sscanf(line, "[[%31[^]]", e->section);
            continue;
        }
        hash = strstr(line, "  #");
        if (hash) *hash = '\0';
        if (sscanf(line, "%63s = %1023s", key, val) != 2) continue;
        if (val[0] == '"') {
            char *end = strrchr(val + 1, '"');
            if (end) *end = '\0';
            if (strcmp(key, "name") == 0) copy_text(e->name, sizeof e->name, val + 1);
            else if (strcmp(key, "error") == 0) copy_text(e->error, sizeof e->error, val + 1);
            else if (strcmp(key, "hex") == 0 && !unhex(val + 1, e->bytes, &e->nbytes)) fail(e, "bad hex");
        } else if (e->nkeys < 32) {
            copy_text(e->keys[e->nkeys], sizeof e->keys[0], key);
            e->v[e->nkeys++] = strtoull(val, NULL, 0);
        }
    }
    finish(e);
    fclose(f);
    free(e);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 && passed > 1 ? 0 : 1;
}
