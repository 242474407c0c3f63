// Host test driver for kernels/*.cuh: prints (in binary, to stdout) what the
// __host__ __device__ helpers compute, so tests/cuda/test_cuda_host.py can compare
// it bit for bit with the NumPy reference. Built with g++ (-x c++) or nvcc.
//
//   host_driver words  SEED START COUNT NBLOCKS         -> uint32 [COUNT][4*NBLOCKS]
//   host_driver draws  SEED START COUNT NDRAWS UNIFORM  -> float32 [COUNT][NDRAWS]
//   host_driver log    < int32 n[]                      -> float32 log(n 2^-24)
//   host_driver sincos < int32 n[]                      -> float32 (sin, cos) pairs
//   host_driver sample JOBFILE                          -> per sample: uint64 key[W], uint8 accepted,
//                                                          float32 margin, float32 output[m]
// JOBFILE (whitespace separated): SEED START COUNT DESC_LEN desc[DESC_LEN] (int64)
//   NSCALES scale_bits[NSCALES] (uint32) M NKEY Xt_bits[n0*M] (uint32, Xt[k*M+row]) labels[M-NKEY]
// The sample command mirrors the kernels' conventions (rows permuted: key rows first).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "network.cuh"

static unsigned long long parse_u64(const char* s) { return std::strtoull(s, nullptr, 0); }

static void write(const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, stdout) != n) std::exit(3);
}

static std::vector<int32_t> read_i32_stdin() {
    std::vector<int32_t> v;
    int32_t buf[4096];
    size_t got;
    while ((got = std::fread(buf, 4, 4096, stdin)) > 0) v.insert(v.end(), buf, buf + got);
    return v;
}

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: host_driver words|draws|log|sincos|sample ...\n");
        return 2;
    }
    const char* cmd = argv[1];
    if (!std::strcmp(cmd, "words") && argc == 6) {
        fp_u64 seed = parse_u64(argv[2]), start = parse_u64(argv[3]), count = parse_u64(argv[4]);
        fp_u32 nb = (fp_u32)parse_u64(argv[5]);
        for (fp_u64 i = 0; i < count; ++i)
            for (fp_u32 b = 0; b < nb; ++b) {
                fp_u32x4 w = fp_stream_block(seed, start + i, b, 0u);
                fp_u32 o[4] = {w.x, w.y, w.z, w.w};
                write(o, sizeof o);
            }
        return 0;
    }
    if (!std::strcmp(cmd, "draws") && argc == 7) {
        fp_u64 seed = parse_u64(argv[2]), start = parse_u64(argv[3]), count = parse_u64(argv[4]);
        long long nd = (long long)parse_u64(argv[5]);
        int uniform = (int)parse_u64(argv[6]);
        std::vector<float> row(nd);
        for (fp_u64 i = 0; i < count; ++i) {
            for (long long b = 0; 4 * b < nd; ++b) {
                float v[4];
                fp_block_draws(seed, start + i, (fp_u32)b, uniform, v);
                for (int t = 0; t < 4 && 4 * b + t < nd; ++t) row[4 * b + t] = v[t];
            }
            write(row.data(), nd * sizeof(float));
        }
        return 0;
    }
    if (!std::strcmp(cmd, "log")) {
        std::vector<int32_t> n = read_i32_stdin();
        std::vector<float> out(n.size());
        for (size_t i = 0; i < n.size(); ++i) out[i] = fp_log_odd24(n[i]);
        write(out.data(), out.size() * 4);
        return 0;
    }
    if (!std::strcmp(cmd, "sincos")) {
        std::vector<int32_t> n = read_i32_stdin();
        std::vector<float> out(2 * n.size());
        for (size_t i = 0; i < n.size(); ++i) fp_sincos2pi_odd24(n[i], &out[2 * i], &out[2 * i + 1]);
        write(out.data(), out.size() * 4);
        return 0;
    }
    if (!std::strcmp(cmd, "sample") && argc == 3) {
        FILE* f = std::fopen(argv[2], "r");
        if (!f) return 4;
        unsigned long long seed, start, count;
        int dlen, nsc, m, nkey;
        if (std::fscanf(f, "%llu %llu %llu %d", &seed, &start, &count, &dlen) != 4) return 5;
        std::vector<long long> desc(dlen);
        for (auto& x : desc)
            if (std::fscanf(f, "%lld", &x) != 1) return 5;
        if (std::fscanf(f, "%d", &nsc) != 1) return 5;
        std::vector<float> scales(nsc);
        for (auto& x : scales) {
            unsigned int u;
            if (std::fscanf(f, "%u", &u) != 1) return 5;
            x = fp_u32_as_float(u);
        }
        fp_net_desc d;
        fp_net_load(desc.data(), scales.data(), &d);
        if (std::fscanf(f, "%d %d", &m, &nkey) != 2) return 5;
        const int n0 = d.widths[0];
        std::vector<float> Xt((size_t)n0 * m);
        for (auto& x : Xt) {
            unsigned int u;
            if (std::fscanf(f, "%u", &u) != 1) return 5;
            x = fp_u32_as_float(u);
        }
        std::vector<unsigned char> labels(m - nkey);
        for (auto& x : labels) {
            int v;
            if (std::fscanf(f, "%d", &v) != 1) return 5;
            x = (unsigned char)v;
        }
        std::fclose(f);
        int maxw = 1;
        for (int l = 0; l <= d.n_layers; ++l) maxw = d.widths[l] > maxw ? d.widths[l] : maxw;
        const int W = (nkey + 63) / 64;
        std::vector<float> theta(d.n_params), work(2 * maxw), x(n0), outz(m);
        long long bad_param = 0;
        for (fp_u64 s = 0; s < count; ++s) {
            const fp_u64 idx = start + s;
            fp_fill_params(d, seed, idx, theta.data());
            for (long long p = 0; p < d.n_params; ++p) {  // the single-parameter path must agree
                float v = fp_param_value(seed, idx, d.uniform, p, fp_param_scale(d, p));
                if (fp_float_as_u32(v) != fp_float_as_u32(theta[p])) ++bad_param;
            }
            std::vector<fp_u32> slots(2 * W, 0u);
            bool mism = false;
            float mg = fp_u32_as_float(0x7F800000u);
            for (int row = 0; row < m; ++row) {
                for (int k = 0; k < n0; ++k) x[k] = Xt[(size_t)k * m + row];
                float z = fp_forward_row(d, theta.data(), x.data(), work.data(), maxw);
                outz[row] = z;
                bool bit = z > 0.0f;
                if (row < nkey) {
                    if (bit) slots[row / 32] |= 1u << (row % 32);
                } else if (bit != (labels[row - nkey] != 0)) {
                    mism = true;
                }
                float a = z < 0.0f ? -z : z;
                mg = a < mg ? a : mg;
            }
            for (int w = 0; w < W; ++w) {
                unsigned long long word = (unsigned long long)slots[2 * w] | ((unsigned long long)slots[2 * w + 1] << 32);
                write(&word, 8);
            }
            unsigned char acc = mism ? 0 : 1;
            write(&acc, 1);
            write(&mg, 4);
            write(outz.data(), (size_t)m * 4);
        }
        if (bad_param) {
            std::fprintf(stderr, "fp_param_value disagrees with fp_fill_params on %lld parameters\n", bad_param);
            return 6;
        }
        return 0;
    }
    std::fprintf(stderr, "bad command line\n");
    return 2;
}
