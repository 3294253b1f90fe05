// td_llama_jinja: a model's chat template rendered the way llama.cpp's server renders it (common_chat_*,
// its Jinja engine, in libllama-common), behind a C function for td_llama_run.c.
#include "td_llama_jinja.h"

#include "chat.h"

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

static char *td_copy(const std::string &s)
{
    char *p = static_cast<char *>(std::malloc(s.size() + 1));
    if (p) std::memcpy(p, s.c_str(), s.size() + 1);
    return p;
}

extern "C" char *td_llama_render_chat(const struct llama_model *model, const td_llama_msg *msgs, int n,
                                      bool add_generation_prompt, int thinking, char *err, size_t err_cap)
{
    try {
        common_chat_templates_ptr tmpls = common_chat_templates_init(model, "");
        common_chat_templates_inputs in;
        for (int i = 0; i < n; i++) {
            common_chat_msg m;
            m.role = msgs[i].role;
            m.content = msgs[i].content;
            in.messages.push_back(m);
        }
        in.add_generation_prompt = add_generation_prompt;
        in.use_jinja = true;
        if (thinking >= 0) in.chat_template_kwargs["thinking"] = thinking ? "true" : "false";
        common_chat_params out = common_chat_templates_apply(tmpls.get(), in);
        return td_copy(out.prompt);
    } catch (const std::exception &e) {
        std::snprintf(err, err_cap, "%s", e.what());
    } catch (...) {
        std::snprintf(err, err_cap, "an unknown C++ exception");
    }
    return nullptr;
}
