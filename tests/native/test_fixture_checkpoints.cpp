// The checkpoints that transformers wrote (tests/fixtures/*/model, made by tools/reference/make_fixtures.py) open,
// validate and report the configuration transformers saved.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "checkpoint.h"
#include "json.h"
#include "platform.h"

namespace {

using namespace qwen3vl;
namespace fs = std::filesystem;

std::vector<std::string> fixture_dirs() {
    std::vector<std::string> dirs;
    const fs::path root = fs::path(QWEN3VL_SOURCE_DIR) / "tests" / "fixtures";
    if (fs::is_directory(root))
        for (const auto& e : fs::directory_iterator(root))
            if (fs::is_directory(e.path() / "model")) dirs.push_back(e.path().string());
    return dirs;
}

TEST(FixtureCheckpoints, ThereAreFixtures) { EXPECT_GE(fixture_dirs().size(), 2u); }

TEST(FixtureCheckpoints, OpenValidateAndMatchConfigJson) {
    for (const std::string& dir : fixture_dirs()) {
        SCOPED_TRACE(dir);
        const std::string model = path_join(dir, "model");
        Checkpoint ck = Checkpoint::open(model);
        const json::Value cfg = json::parse(read_text_file(path_join(model, "config.json")), "config.json");
        const json::Value& text = *cfg.find("text_config");
        const json::Value& vision = *cfg.find("vision_config");
        const ModelConfig& c = ck.config();
        EXPECT_EQ(c.text.hidden_size, text.find("hidden_size")->as_int());
        EXPECT_EQ(c.text.num_hidden_layers, text.find("num_hidden_layers")->as_int());
        EXPECT_EQ(c.text.vocab_size, 151936);
        EXPECT_EQ(c.vision.depth, vision.find("depth")->as_int());
        EXPECT_EQ(c.vision.deepstack_visual_indexes.size(), vision.find("deepstack_visual_indexes")->as_array().size());
        EXPECT_EQ(c.tie_word_embeddings, cfg.find("tie_word_embeddings")->as_bool());
        EXPECT_EQ(ck.find("lm_head.weight") != nullptr, !c.tie_word_embeddings);
        EXPECT_EQ(ck.tensor("model.language_model.embed_tokens.weight").shape[0], 151936);
        EXPECT_FALSE(c.eos_token_ids.empty());
    }
}

}  // namespace
