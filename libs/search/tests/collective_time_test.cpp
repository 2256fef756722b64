#include "partita/search/collective_time.h"

#include <gtest/gtest.h>

#include "partita/cost/comm.h"

namespace partita {
namespace {

TEST(CollectiveTime, EqualsTheCostModelsAllReduce) {
  const LinkSpec link{"l", Seconds(5e-6), BytesPerSecond(25e9), ""};
  for (int p : {1, 2, 3, 4, 7, 8, 64, 1000}) {
    for (int64_t n : {int64_t{0}, int64_t{8}, int64_t{1} << 20, int64_t{1} << 34}) {
      EXPECT_NEAR(fast_allreduce_time(Bytes(n), p, link).value(), allreduce_time(Bytes(n), p, link).value(),
                  1e-15)
          << p << " " << n;
    }
  }
}

}  // namespace
}  // namespace partita
