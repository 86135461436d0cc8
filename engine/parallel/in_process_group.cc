#include "engine/parallel/in_process_group.h"

#include <algorithm>
#include <cstdlib>

namespace xlserve {

class InProcessGroup::Member final : public Communicator {
 public:
  Member(InProcessGroup* group, int rank) : group_(group), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return group_->size(); }

  void AllReduceSum(std::span<float> data) override {
    const int n = size();
    group_->published_[rank_] = data;
    group_->barrier_.arrive_and_wait();  // every rank's partials are in place
    sum_.resize(data.size());
    std::vector<float> column(n);
    for (size_t i = 0; i < data.size(); ++i) {
      for (int r = 0; r < n; ++r) {
        const std::span<float> other = group_->published_[r];
        // A collective called with different lengths is a programming error, not input.
        if (other.size() != data.size()) std::abort();
        column[r] = other[i];
      }
      sum_[i] = PairwiseSum(column);
    }
    group_->barrier_.arrive_and_wait();  // nobody reads the partials any more
    std::copy(sum_.begin(), sum_.end(), data.begin());
  }

 private:
  InProcessGroup* group_;
  int rank_;
  std::vector<float> sum_;
};

InProcessGroup::InProcessGroup(int ranks) : barrier_(ranks), published_(ranks) {
  for (int r = 0; r < ranks; ++r) members_.push_back(std::make_unique<Member>(this, r));
}

InProcessGroup::~InProcessGroup() = default;

Communicator& InProcessGroup::rank(int r) { return *members_[r]; }

}  // namespace xlserve
