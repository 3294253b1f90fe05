# check_layers.cmake must refuse each kind of wrong include, and accept the layering itself: small trees
# are written under WORK, one per case, and the check is run on each.
#   cmake -DWORK=<scratch dir> -DCHECK=<tests/check_layers.cmake> -P tests/check_layers_selftest.cmake
set(failures "")
set(n_cases 0)

# A tree in which every folder holds one header, and each folder includes what the arrows allow.
function(write_good dir)
  file(REMOVE_RECURSE "${dir}")
  file(WRITE "${dir}/base/td_b.h" "")
  file(WRITE "${dir}/model/td_m.h" "#include \"td_b.h\"\n")
  file(WRITE "${dir}/placement_rules/td_p.h" "#include \"td_m.h\"\n#include \"td_b.h\"\n")
  file(WRITE "${dir}/cpu_kernels/td_c.h" "#include \"td_b.h\"\n#include <stdio.h>\n#include \"third_party.h\"\n")
  file(WRITE "${dir}/gpu_kernels/td_g.cu" "#include \"td_b.h\"\n")
  file(WRITE "${dir}/gpu_kernels/td_g.h" "")
  file(WRITE "${dir}/runtime/td_r.h"
       "#include \"td_p.h\"\n#include \"td_m.h\"\n#include \"td_c.h\"\n#include \"td_g.h\"\n#include \"td_b.h\"\n")
  file(WRITE "${dir}/tools/td_t.c" "#include \"td_r.h\"\n#include \"td_c.h\"\n#include \"td_p.h\"\n")
endfunction()

# expect: 0 (accepted) or 1 (refused); `file` gets `line` appended first (when file is not "-").
function(check_case name expect file line)
  set(dir "${WORK}/${name}")
  write_good("${dir}")
  if(NOT file STREQUAL "-")
    file(APPEND "${dir}/${file}" "${line}\n")
  endif()
  execute_process(COMMAND ${CMAKE_COMMAND} -DROOT=${dir} -P ${CHECK} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE out)
  math(EXPR n "${n_cases} + 1")
  set(n_cases ${n} PARENT_SCOPE)
  if(expect EQUAL 0 AND NOT rc EQUAL 0)
    set(failures "${failures}  ${name}: a correct tree was refused:\n${out}\n" PARENT_SCOPE)
  elseif(expect EQUAL 1 AND (rc EQUAL 0 OR NOT out MATCHES "${file}"))
    set(failures "${failures}  ${name}: '${line}' in ${file} was not refused by name (exit ${rc}):\n${out}\n"
        PARENT_SCOPE)
  endif()
endfunction()

check_case(good 0 - "")
check_case(cpu_includes_runtime 1 cpu_kernels/td_c.h "#include \"td_r.h\"")
check_case(cpu_includes_model 1 cpu_kernels/td_c.h "#include \"td_m.h\"")
check_case(cpu_includes_rules 1 cpu_kernels/td_c.h "#include \"td_p.h\"")
check_case(gpu_includes_runtime_by_path 1 gpu_kernels/td_g.cu "#include \"../runtime/td_r.h\"")
check_case(gpu_includes_cpu 1 gpu_kernels/td_g.cu "#  include \"td_c.h\"")
check_case(model_includes_cpu 1 model/td_m.h "#include \"td_c.h\"")
check_case(model_includes_rules 1 model/td_m.h "#include \"td_p.h\"")
check_case(rules_includes_runtime 1 placement_rules/td_p.h "#include \"td_r.h\"")
check_case(rules_includes_gpu 1 placement_rules/td_p.h "#include \"td_g.h\"")
check_case(base_includes_model 1 base/td_b.h "#include \"td_m.h\"")
check_case(runtime_includes_tools 1 runtime/td_r.h "#include \"td_t.c\"")
check_case(same_basename_twice 1 model/td_b.h "")

if(failures)
  message(FATAL_ERROR "check_layers_selftest:\n${failures}")
endif()
message(STATUS "check_layers_selftest: ${n_cases} cases as expected")
