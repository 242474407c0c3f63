// emu_registry.h -- kernel instantiations the emulator library exposes (name -> thunk, signature).
// The generated kernel translation units (tests/cuda_emu/build.py) register each instantiation:
//   static emu::Registrar r("fastpoly_csr_layer<float, 0>", &emu::thunk<&fastpoly_csr_layer<float, 0>>,
//                           emu::signature(&fastpoly_csr_layer<float, 0>), static_smem, max_threads);
#ifndef FASTPOLY_EMU_REGISTRY_H
#define FASTPOLY_EMU_REGISTRY_H

#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace emu {

struct KernelInfo {
    const char* name;
    void (*thunk)(void**);
    std::string signature;  // "u8,u8,p4,i4,...": one code per parameter (p<pointee size>)
    size_t static_smem;     // bytes of static __shared__ (what cudaFuncGetAttributes reports)
    int max_threads;        // __launch_bounds__ (1024 without)
};

std::vector<KernelInfo>& registry();

struct Registrar {
    Registrar(const char* name, void (*thunk)(void**), std::string sig, size_t static_smem, int max_threads) {
        registry().push_back(KernelInfo{name, thunk, std::move(sig), static_smem, max_threads});
    }
};

template <typename T>
std::string type_code() {
    using U = std::remove_cv_t<T>;
    if constexpr (std::is_pointer<U>::value) {
        using P = std::remove_cv_t<std::remove_pointer_t<U>>;
        if constexpr (std::is_void<P>::value) return "p0";
        else return "p" + std::to_string(sizeof(P));
    }
    else if constexpr (std::is_floating_point<U>::value) return "f" + std::to_string(sizeof(U));
    else if constexpr (std::is_integral<U>::value)
        return std::string(std::is_signed<U>::value ? "i" : "u") + std::to_string(sizeof(U));
    else return "?" + std::to_string(sizeof(U));
}

template <typename... A>
std::string signature(void (*)(A...)) {
    std::string s;
    ((s += (s.empty() ? "" : ","), s += type_code<A>()), ...);
    return s;
}

template <typename... A, std::size_t... I>
void call_with(void (*f)(A...), void** args, std::index_sequence<I...>) {
    f(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(args[I])...);
}

template <typename... A>
void call(void (*f)(A...), void** args) {
    call_with(f, args, std::index_sequence_for<A...>{});
}

template <auto F>
void thunk(void** args) {
    call(F, args);
}

}  // namespace emu

#endif  // FASTPOLY_EMU_REGISTRY_H
